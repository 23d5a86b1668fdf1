"""beatedit: RLHF for automatic music editing (domain code: audio front end, env, listener, judge, editors)."""
