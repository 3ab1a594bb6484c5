"""The trading tick: calendar -> reconcile -> data -> features -> decide -> size -> risk -> submit -> journal."""
