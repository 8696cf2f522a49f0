"""A test agent laid out like the public LangGraph templates (written for these tests)."""
