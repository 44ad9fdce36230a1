def value() -> str:
    return "loaded lazily"
