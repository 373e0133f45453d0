package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// maxNodes bounds --nodes: fake Node IPs come from a /24.
const maxNodes = 200

// nodeName is the name of fake Node i.
func nodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// fakeNode is the Node kwok's documentation suggests for a fake node: marked
// for kwok by annotation, roomy (32 CPUs, 256Gi memory, 110 Pods), untainted,
// with its own InternalIP. kwok fills in the rest of the status and keeps it
// Ready. (The API server accepts status on Node creation.)
func fakeNode(i int) *corev1.Node {
	name := nodeName(i)
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: kwokNodeAnnotationValue},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/role":     "agent",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: resources,
			Capacity:    resources.DeepCopy(),
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("%s%d", nodeIPBase, i+1)},
				{Type: corev1.NodeHostName, Address: name},
			},
		},
	}
}

// createNodes creates n fake Nodes (an existing Node of the same name is
// left alone) and returns their names in order.
func createNodes(ctx context.Context, cs kubernetes.Interface, n int) ([]string, error) {
	names := make([]string, 0, n)
	for i := range n {
		node := fakeNode(i)
		_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create node %s: %w", node.Name, err)
		}
		names = append(names, node.Name)
	}
	return names, nil
}

// nodesReady reports whether every named Node exists and has condition
// Ready=True. It is a poll check for cluster.poll.
func nodesReady(ctx context.Context, cs kubernetes.Interface, names []string) (bool, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	ready := map[string]bool{}
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready[n.Name] = true
			}
		}
	}
	for _, name := range names {
		if !ready[name] {
			return false, fmt.Errorf("node %s is not Ready yet", name)
		}
	}
	return true, nil
}
