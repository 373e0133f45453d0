// Command localcluster is agent-smith's local Kubernetes control plane: one
// multi-call binary that runs embedded etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl, kubelet and kube-proxy, all
// from the pinned k8s.io/kubernetes module, plus an `up` orchestrator that wires them together
// on free loopback ports with freshly generated certificates.
//
// It is a development and test tool: nothing in a production install uses it.
//
// Usage: localcluster <subcommand> [flags]   (or invoked through a symlink
// named after the subcommand, e.g. `kubectl`).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "time/tzdata" // the scheduler and controller-manager parse zone names

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

const usage = `usage: localcluster <subcommand> [flags]

subcommands:
  up                        start a whole local control plane (see: localcluster up -h)
  etcd                      embedded etcd (go.etcd.io/etcd/server/v3/embed)
  kube-apiserver            k8s.io/kubernetes/cmd/kube-apiserver
  kube-controller-manager   k8s.io/kubernetes/cmd/kube-controller-manager
  kube-scheduler            k8s.io/kubernetes/cmd/kube-scheduler
  kubectl                   k8s.io/kubectl
  kubelet                   k8s.io/kubernetes/cmd/kubelet (used by up --real-node)
  kube-proxy                k8s.io/kubernetes/cmd/kube-proxy (used by up --real-node)
  version                   print the Kubernetes version this binary was built from
`

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "localcluster" || strings.HasPrefix(name, "localcluster-") {
		if len(args) == 0 {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	os.Exit(run(name, args))
}

func run(name string, args []string) int {
	switch name {
	case "up":
		return runUp(args)
	case "etcd":
		return runEtcd(args)
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kubelet":
		cmd := kubelet.NewKubeletCommand(context.Background())
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kube-proxy":
		cmd := proxy.NewProxyCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kubectl":
		cmd := kubectlcmd.NewDefaultKubectlCommand()
		cmd.SetArgs(args)
		if err := cli.RunNoErrOutput(cmd); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	case "version":
		fmt.Println(kubeVersion())
		return 0
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "localcluster: unknown subcommand %q\n\n%s", name, usage)
		return 2
	}
}
