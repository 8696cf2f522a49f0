"""Who the caller is and what reaches a run: API keys, rate and body limits (`keys`), `langgraph.json`
auth.path handlers (`handlers`), and the one rule for credentials (`credentials`). What a caller may
reach is `ownership.Scope`."""
