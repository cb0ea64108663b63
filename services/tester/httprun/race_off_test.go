//go:build !race

package httprun

const raceEnabled = false
