"""The model catalogue: which model names exist and where their weights come from."""
