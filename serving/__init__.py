"""The BentoML service for chatbots (built in a later issue)."""
