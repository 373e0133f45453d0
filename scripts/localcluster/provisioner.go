package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const (
	// storageClassName is the default StorageClass `up` creates.
	storageClassName = "standard"
	// provisionerName is that StorageClass's provisioner, served by provisioner.
	provisionerName = "agentsmith.dev/local-dev"

	// annProvisionedBy marks a PV as dynamically provisioned; the PV controller
	// leaves deleting such a PV to the named (external) provisioner.
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// annStorageProvisioner is set on a PVC by the PV controller once it has
	// decided the claim needs dynamic provisioning (no existing PV matched).
	annStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
)

// ensureStorageClass creates the default StorageClass "standard" (Immediate
// binding, reclaim policy Delete) served by provisioner. An existing one is
// left alone. PVCs created without a class get it from the DefaultStorageClass
// admission plugin.
func ensureStorageClass(ctx context.Context, cs kubernetes.Interface) error {
	binding := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        storageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       provisionerName,
		VolumeBindingMode: &binding,
		ReclaimPolicy:     &reclaim,
	}
	_, err := cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass %s: %w", storageClassName, err)
	}
	return nil
}

// provisioner is a minimal dynamic volume provisioner for development: for
// each pending PVC of StorageClass "standard" it creates a hostPath PV
// pre-bound to the claim (the kube-controller-manager's PV controller then
// completes the binding) over a directory of mode 0777, and it deletes released PVs it provisioned along
// with their directories. With kwok nothing is mounted; on the real node
// (up --real-node) kubelet mounts the directories into pods.
//
// It polls, which is plenty for a handful of claims.
type provisioner struct {
	Client     kubernetes.Interface
	VolumesDir string        // absolute; parent of every volume directory
	Interval   time.Duration // time between two passes
	Log        *log.Logger   // where actions and errors go (DIR/logs/provisioner.log)

	lastErr string             // last error logged, to avoid repeating it every pass
	skipped map[types.UID]bool // claims already logged as unsupported
}

// Run provisions and deletes volumes until ctx is done.
func (p *provisioner) Run(ctx context.Context) {
	p.skipped = map[types.UID]bool{}
	ticker := time.NewTicker(p.Interval)
	defer ticker.Stop()
	for {
		p.logErr(p.sync(ctx))
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sync makes one pass over all PVCs and PVs.
func (p *provisioner) sync(ctx context.Context) error {
	pvcs, err := p.Client.CoreV1().PersistentVolumeClaims(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list PVCs: %w", err)
	}
	pvs, err := p.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list PVs: %w", err)
	}
	existing := make(map[string]bool, len(pvs.Items))
	for _, pv := range pvs.Items {
		existing[pv.Name] = true
	}
	var errs []string
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if !p.wants(pvc) || existing[pvName(pvc)] {
			continue
		}
		if err := p.provision(ctx, pvc); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations[annProvisionedBy] != provisionerName ||
			pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
			pv.DeletionTimestamp != nil {
			continue
		}
		if err := p.delete(ctx, pv); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// wants reports whether pvc is an unbound claim the PV controller has handed
// to this provisioner. Claims with a label selector or block volume mode are
// logged once and ignored, as real provisioners do.
func (p *provisioner) wants(pvc *corev1.PersistentVolumeClaim) bool {
	if pvc.DeletionTimestamp != nil || pvc.Spec.VolumeName != "" ||
		pvc.Status.Phase != corev1.ClaimPending ||
		pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != storageClassName {
		return false
	}
	if pvc.Annotations[annStorageProvisioner] != provisionerName &&
		pvc.Annotations[annBetaStorageProvisioner] != provisionerName {
		return false // the PV controller has not asked for a volume (yet)
	}
	var why string
	switch {
	case pvc.Spec.Selector != nil:
		why = "claims with a selector are not supported"
	case pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock:
		why = "block volumes are not supported"
	default:
		return true
	}
	if !p.skipped[pvc.UID] {
		p.skipped[pvc.UID] = true
		p.Log.Printf("ignoring PVC %s/%s: %s", pvc.Namespace, pvc.Name, why)
	}
	return false
}

// volumeDirName is <namespace>-<name>-<first 8 characters of the UID>, with
// the namespace-name part cut short if needed to stay well within the 255
// byte limit of a file name.
func volumeDirName(pvc *corev1.PersistentVolumeClaim) string {
	const maxPrefix = 200
	prefix := pvc.Namespace + "-" + pvc.Name
	if len(prefix) > maxPrefix {
		prefix = prefix[:maxPrefix]
	}
	uid := string(pvc.UID)
	return prefix + "-" + uid[:min(8, len(uid))]
}

// pvName is the name of the PV provisioned for pvc, the usual "pvc-<uid>".
func pvName(pvc *corev1.PersistentVolumeClaim) string { return "pvc-" + string(pvc.UID) }

// provision creates the volume directory and a PV pre-bound to pvc with the
// claim's requested size and access modes.
func (p *provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("PVC %s/%s requests no storage", pvc.Namespace, pvc.Name)
	}
	dir := filepath.Join(p.VolumesDir, volumeDirName(pvc))
	// World-writable, as local-path-provisioner makes them: kubelet applies
	// no fsGroup to hostPath volumes, and containers (the agent runs as UID
	// 1000) must be able to write. Chmod, since MkdirAll's mode passes the umask.
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName(pvc),
			Annotations: map[string]string{annProvisionedBy: provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: pvc.Spec.AccessModes,
			ClaimRef: &corev1.ObjectReference{
				Kind:       "PersistentVolumeClaim",
				APIVersion: "v1",
				Namespace:  pvc.Namespace,
				Name:       pvc.Name,
				UID:        pvc.UID,
			},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              storageClassName,
			VolumeMode:                    pvc.Spec.VolumeMode,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	_, err := p.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		_ = os.Remove(dir) // only if still empty
		return fmt.Errorf("create PV for PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	p.Log.Printf("provisioned PV %s (%s) for PVC %s/%s at %s", pv.Name, size.String(), pvc.Namespace, pvc.Name, dir)
	return nil
}

// delete removes a released PV and, if it lies under VolumesDir, its directory.
func (p *provisioner) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	err := p.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete PV %s: %w", pv.Name, err)
	}
	if hp := pv.Spec.HostPath; hp != nil && isUnder(hp.Path, p.VolumesDir) {
		if err := os.RemoveAll(hp.Path); err != nil {
			return fmt.Errorf("remove volume directory of PV %s: %w", pv.Name, err)
		}
	}
	p.Log.Printf("deleted released PV %s", pv.Name)
	return nil
}

// logErr logs err unless it repeats the previous pass's error.
func (p *provisioner) logErr(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != p.lastErr && msg != "" {
		p.Log.Print(msg)
	}
	p.lastErr = msg
}

// isUnder reports whether path is strictly inside dir (both absolute).
func isUnder(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
