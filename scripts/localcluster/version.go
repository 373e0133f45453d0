package main

import "k8s.io/component-base/version"

// kubeVersion is the gitVersion stamped in by -ldflags at build time
// (see scripts/k8s-build.sh); without it /version would say v0.0.0.
func kubeVersion() string { return version.Get().GitVersion }
