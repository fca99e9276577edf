def squares(limit):
    result = []
    for i in range(limit)
        result.append(i * i)
    return result
