"""The MA-LMM bridge: turn tokens -> memory banks -> Q-Former -> llm_proj -> soft tokens of a frozen (4-bit) LLM.

Verbs `bridge` (train.py) and `infer` (infer.py); config.py holds their settings.
"""
