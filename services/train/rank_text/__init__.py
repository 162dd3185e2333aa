"""`rank-text`: rank VisDial's candidate answers with a text-only causal LM under memory conditions (docs/HISTORY.md).

config (settings), prompts (what each condition puts before the question, option tokens), job (scoring, outputs).
"""
