"""What a run looks like to its clients while it runs: the SDK's stream modes (`stream`) and the
thread-centric streaming protocol of langgraph-sdk 0.4 (`protocol`)."""
