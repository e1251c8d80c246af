package config

import (
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Kubernetes service links: for every Service in a pod's namespace the
// kubelet injects (unless the pod sets enableServiceLinks: false)
//
//	<SVC>_SERVICE_HOST=10.96.0.12
//	<SVC>_SERVICE_PORT=9464
//	<SVC>_SERVICE_PORT_<PORTNAME>=9464
//	<SVC>_PORT=tcp://10.96.0.12:9464
//	<SVC>_PORT_9464_TCP=tcp://10.96.0.12:9464
//	<SVC>_PORT_9464_TCP_PROTO=tcp
//	<SVC>_PORT_9464_TCP_PORT=9464
//	<SVC>_PORT_9464_TCP_ADDR=10.96.0.12
//
// where <SVC> is the Service's name upper-cased with '-' as '_'. A Service
// named premiscale-metrics therefore gives PREMISCALE_METRICS_*, which is
// PremiScale's own prefix: the loader tells those apart from config keys by
// their names and values together, so that no release name makes the pod
// refuse to start.
var (
	linkServiceHost = regexp.MustCompile(`^[A-Z0-9_]+_SERVICE_HOST$`)
	linkServicePort = regexp.MustCompile(`^[A-Z0-9_]+_SERVICE_PORT(_[A-Z0-9_]+)?$`)
	linkPort        = regexp.MustCompile(`^[A-Z0-9_]+_PORT$`)
	linkPortProto   = regexp.MustCompile(`^[A-Z0-9_]+_PORT_([0-9]+)_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?$`)
)

// isServiceLink reports whether name=value is a variable the kubelet
// injects for a Service rather than a setting.
func isServiceLink(name, value string) bool {
	if m := linkPortProto.FindStringSubmatch(name); m != nil {
		port, proto := m[1], strings.ToLower(m[2])
		switch m[3] {
		case "_PROTO":
			return value == proto
		case "_PORT":
			return value == port && isPort(value)
		case "_ADDR":
			return net.ParseIP(value) != nil
		default:
			p, ok := serviceURL(value)
			return ok && p.proto == proto && p.port == port
		}
	}
	switch {
	case linkServiceHost.MatchString(name):
		return net.ParseIP(value) != nil
	case linkServicePort.MatchString(name):
		return isPort(value)
	case linkPort.MatchString(name):
		_, ok := serviceURL(value)
		return ok
	}
	return false
}

type serviceAddr struct{ proto, port string }

// serviceURL parses tcp://10.96.0.12:9464 (or udp, sctp; IPv6 in brackets).
func serviceURL(v string) (serviceAddr, bool) {
	proto, rest, ok := strings.Cut(v, "://")
	if !ok || (proto != "tcp" && proto != "udp" && proto != "sctp") {
		return serviceAddr{}, false
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || net.ParseIP(host) == nil || !isPort(port) {
		return serviceAddr{}, false
	}
	return serviceAddr{proto, port}, true
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536 && strconv.Itoa(n) == s
}
