def count_down(n):
    whlie n > 0:
        print(n)
        n -= 1
    print("liftoff")


count_down(3)
