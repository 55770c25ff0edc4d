"""``gen_ai.provider.name`` from the server's host name (OTel GenAI conventions)."""

from __future__ import annotations

from urllib.parse import urlsplit

OTHER = "_OTHER"

#: exact host -> provider; well-known values of the GenAI semantic conventions.
_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.perplexity.ai": "perplexity",
    "api.x.ai": "x_ai",
}

#: host suffix -> provider, checked in order (the more specific first).
_SUFFIXES = (
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    (".inference.ai.azure.com", "azure.ai.inference"),
    (".models.ai.azure.com", "azure.ai.inference"),
    ("-aiplatform.googleapis.com", "gcp.vertex_ai"),
    (".amazonaws.com", "aws.bedrock"),
    (".ml.cloud.ibm.com", "ibm.watsonx.ai"),
)


def infer_provider(url: str, override: str | None = None, implied: str | None = None) -> str:
    """The provider for ``url``; ``override`` (``--gen-ai-provider``) wins; then the host;
    then what the endpoint type's API shape implies (``implied``); unknown -> ``_OTHER``."""
    if override:
        return override
    host = (urlsplit(url if "://" in url else "http://" + url).hostname or "").lower()
    if host in _HOSTS:
        return _HOSTS[host]
    for suffix, provider in _SUFFIXES:
        if host.endswith(suffix):
            if provider == "aws.bedrock" and not host.startswith("bedrock"):
                continue
            return provider
    return implied or OTHER
