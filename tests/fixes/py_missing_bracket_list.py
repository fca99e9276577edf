PRIMES = [2, 3, 5, 7, 11, 13


def is_small_prime(n):
    return n in PRIMES


print(is_small_prime(7))
