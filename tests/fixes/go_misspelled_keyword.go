package main

import "fmt"

func sum(xs []int) int {
	total := 0
	fro _, x := range xs {
		total += x
	}
	return total
}

func main() {
	fmt.Println(sum([]int{1, 2, 3}))
}
