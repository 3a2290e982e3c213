"""Turning submitted HTML forms into the dicts our pydantic schemas validate."""

from __future__ import annotations

from starlette.datastructures import FormData

MAX_FIELD = 10_000


def form_str(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def endpoint_form_values(form: FormData) -> dict[str, str]:
    """What the user typed, to re-fill the form (never the API key)."""
    fields = (
        "name", "base_url", "api_flavor", "model", "gpu_model", "gpu_count", "price_per_gpu_hour",
        "overhead_per_hour", "watts_per_gpu", "electricity_price_per_kwh", "input_price_per_million",
        "output_price_per_million",
        "engine", "quantization", "tags", "metrics_url", "tokenizer", "description",
    )  # fmt: skip
    return {field: form_str(form, field) for field in fields}


NUMERIC = {
    "gpu_count": int,
    "price_per_gpu_hour": float,
    "overhead_per_hour": float,
    "watts_per_gpu": float,
    "electricity_price_per_kwh": float,
    "input_price_per_million": float,
    "output_price_per_million": float,
}


def endpoint_payload(values: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Form strings to schema input: blanks become None, numbers parsed, tags split on commas."""
    payload: dict[str, object] = {}
    errors: dict[str, str] = {}
    for field, raw in values.items():
        raw = raw.strip()
        if field == "tags":
            payload[field] = [t for t in (part.strip() for part in raw.split(",")) if t]
        elif field in NUMERIC:
            if not raw:
                payload[field] = None
                continue
            try:
                payload[field] = NUMERIC[field](raw.replace("_", ""))
            except ValueError:
                errors[field] = "enter a whole number" if NUMERIC[field] is int else "enter a number"
        elif field == "api_flavor":
            if raw:
                payload[field] = raw
        elif field in ("name", "base_url", "model"):
            payload[field] = raw
        else:
            payload[field] = raw or None
    return payload, errors
