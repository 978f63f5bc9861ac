"""The model seam: the gateway (retries, timeouts, budgets, usage and cost), the embedded llama.cpp
server, the scripted test model, the call logs. The only place that imports litellm or the openai SDK."""
