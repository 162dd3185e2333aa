"""The chat demo (`python -m services.train chat`): a Gradio app over a bridge run or a Gemma-3 adapter that shows
what the model remembered (config, session, encoder, bridge_engine, gemma_engine, panel, app)."""
