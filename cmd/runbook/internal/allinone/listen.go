package allinone

import (
	"fmt"
	"net"
	"strconv"
)

func splitListen(addr string) (string, int, error) {
	if addr == "" {
		return "127.0.0.1", -1, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("--nats-listen %q: want host:port, e.g. 127.0.0.1:4222: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("--nats-listen %q: port %q is not a number in 0..65535", addr, p)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}
