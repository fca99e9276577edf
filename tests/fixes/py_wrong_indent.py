def parse_pairs(text):
    pairs = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
          pairs[key.strip()] = value.strip()
    return pairs
