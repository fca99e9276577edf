package main

import "fmt"

func average(xs []float64) float64 {
	total := 0.0
	for _, x := range xs {
		total += x
	}
	return total / float64(len(xs)
}

func main() {
	fmt.Println(average([]float64{1, 2, 3}))
}
