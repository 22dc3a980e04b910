def write_cdnow(*a, **k): raise NotImplementedError
