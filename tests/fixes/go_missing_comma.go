package main

import "fmt"

func main() {
	names := []string{
		"ada",
		"grace"
		"linus",
	}
	fmt.Println(len(names))
}
