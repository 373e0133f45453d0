package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
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
// It watches PVCs and PVs through informers (one LIST each at start, then
// watch events; passes read the in-memory caches, so a pass over 10 000
// claims costs no request) and makes a pass after every change, coalesced,
// and every Interval (to retry failures). A pass creates or deletes PVs
// Workers at a time.
type provisioner struct {
	Client     kubernetes.Interface // no request timeout: it carries watches
	VolumesDir string               // absolute; parent of every volume directory
	Interval   time.Duration        // longest time between two passes
	Workers    int                  // PV creates and deletes in flight at once (<= 0: 1)
	Log        *log.Logger          // where actions and errors go (DIR/logs/provisioner.log)
	// Eager (up --unthrottled) provisions a pending claim of class "standard"
	// as soon as it exists, without waiting for the PV controller to hand it
	// over (the storage-provisioner annotation), and completes the binding
	// itself (see bind). The PV controller syncs claims one at a time, about 4
	// writes each: in a burst it binds about 20 claims/s on 2 cores and sets
	// the pace of every StatefulSet pod. The catch, why it is not the default:
	// a claim the PV controller would rather bind to an existing Available PV
	// of class "standard" may get one of ours as well, which then ends
	// Released and is deleted.
	Eager bool

	lastErr string             // last error logged, to avoid repeating it every pass
	skipped map[types.UID]bool // claims already logged as unsupported
	pvcs    corelisters.PersistentVolumeClaimLister
	pvs     corelisters.PersistentVolumeLister
	// recent holds the PVs this provisioner created or deleted and when, until
	// the cache shows the change (or recentTTL passes), so that a pass that
	// runs before the watch event does not repeat the request.
	recent map[string]time.Time
}

// recentTTL bounds how long a PV created or deleted here is skipped while the
// cache does not show it yet.
const recentTTL = 30 * time.Second

// requestTimeout bounds each create or delete.
const requestTimeout = 30 * time.Second

// stripManagedFields drops managedFields from cached objects: the
// provisioner never reads them, and at 10 000 claims they are most of the cache.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Run provisions and deletes volumes until ctx is done.
func (p *provisioner) Run(ctx context.Context) {
	p.skipped = map[types.UID]bool{}
	p.recent = map[string]time.Time{}
	factory := informers.NewSharedInformerFactoryWithOptions(p.Client, 0, informers.WithTransform(stripManagedFields))
	pvcInformer := factory.Core().V1().PersistentVolumeClaims()
	pvInformer := factory.Core().V1().PersistentVolumes()
	p.pvcs, p.pvs = pvcInformer.Lister(), pvInformer.Lister()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{pvcInformer.Informer(), pvInformer.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			p.Log.Printf("watch PVCs and PVs: %v", err)
			return
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for !cache.WaitForCacheSync(ctx.Done(), pvcInformer.Informer().HasSynced, pvInformer.Informer().HasSynced) {
		if ctx.Err() != nil {
			return
		}
	}
	ticker := time.NewTicker(p.Interval)
	defer ticker.Stop()
	for {
		p.logErr(p.sync(ctx))
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ticker.C:
		}
	}
}

// sync makes one pass over all PVCs and PVs in the caches.
func (p *provisioner) sync(ctx context.Context) error {
	pvcs, err := p.pvcs.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list PVCs: %w", err)
	}
	pvs, err := p.pvs.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list PVs: %w", err)
	}
	now := time.Now()
	existing := make(map[string]bool, len(pvs))
	for _, pv := range pvs {
		existing[pv.Name] = true
	}
	for name, at := range p.recent {
		if now.Sub(at) > recentTTL {
			delete(p.recent, name)
		}
	}
	var jobs []job
	for _, pvc := range pvcs {
		name := pvName(pvc)
		if existing[name] {
			delete(p.recent, name)
			continue
		}
		if !p.wants(pvc) {
			continue
		}
		if _, ok := p.recent[name]; ok {
			continue // created here, not in the cache yet
		}
		p.recent[name] = now
		jobs = append(jobs, job{name, func() error { return p.provision(ctx, pvc) }})
	}
	for _, pv := range pvs {
		if pv.Annotations[annProvisionedBy] != provisionerName ||
			pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
			pv.DeletionTimestamp != nil {
			continue
		}
		if _, ok := p.recent["delete/"+pv.Name]; ok {
			continue // deleted here, still in the cache
		}
		p.recent["delete/"+pv.Name] = now
		jobs = append(jobs, job{"delete/" + pv.Name, func() error { return p.delete(ctx, pv) }})
	}
	failed, errs := p.runAll(jobs)
	for _, key := range failed {
		delete(p.recent, key) // the next pass retries it
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// job is one PV create or delete of a pass; key is its entry in recent.
type job struct {
	key string
	run func() error
}

// runAll runs jobs, Workers at a time, and returns the keys of those that
// failed and their errors' messages.
func (p *provisioner) runAll(jobs []job) (failed, errs []string) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, max(1, p.Workers))
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := j.run(); err != nil {
				mu.Lock()
				failed, errs = append(failed, j.key), append(errs, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed, errs
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
	if !p.Eager && pvc.Annotations[annStorageProvisioner] != provisionerName &&
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
	reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	created, err := p.Client.CoreV1().PersistentVolumes().Create(reqCtx, pv, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		_ = os.Remove(dir) // only if still empty
		return fmt.Errorf("create PV for PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	p.Log.Printf("provisioned PV %s (%s) for PVC %s/%s at %s", pv.Name, size.String(), pvc.Namespace, pvc.Name, dir)
	if p.Eager {
		return p.bind(ctx, created, pvc, size)
	}
	return nil
}

// Annotations the PV controller puts on a claim it has bound; the scheduler
// counts a claim as bound only with annBindCompleted
// (k8s.io/kubernetes pkg/scheduler/framework/plugins/volumebinding isPVCFullyBound).
const (
	annBindCompleted     = "pv.kubernetes.io/bind-completed"
	annBoundByController = "pv.kubernetes.io/bound-by-controller"
)

// bind does what the PV controller's bind does for a claim and the PV
// pre-bound to it, with the same writes (PV status Bound; the claim's
// volumeName and annotations; the claim's status Bound), so that many claims
// are bound at once instead of one after the other. A conflict means someone
// (the PV controller) got there first: the rest is left to it.
func (p *provisioner) bind(ctx context.Context, pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim, size resource.Quantity) error {
	reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pvName := pv.Name
	done := func(err error, what string) (bool, error) {
		switch {
		case err == nil:
			return false, nil
		case apierrors.IsConflict(err), apierrors.IsNotFound(err):
			return true, nil
		default:
			return true, fmt.Errorf("bind PVC %s/%s to PV %s: %s: %w", claim.Namespace, claim.Name, pvName, what, err)
		}
	}
	pv = pv.DeepCopy() // the caller's, from Create: leave it alone
	pv.Status.Phase = corev1.VolumeBound
	_, err := p.Client.CoreV1().PersistentVolumes().UpdateStatus(reqCtx, pv, metav1.UpdateOptions{})
	if stop, err := done(err, "PV status"); stop {
		return err
	}
	pvc := claim.DeepCopy() // claim is the informer's: never modify it
	pvc.Spec.VolumeName = pvName
	if pvc.Annotations == nil {
		pvc.Annotations = map[string]string{}
	}
	pvc.Annotations[annBindCompleted] = "yes"
	pvc.Annotations[annBoundByController] = "yes"
	pvc, err = p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(reqCtx, pvc, metav1.UpdateOptions{})
	if stop, err := done(err, "claim"); stop {
		return err
	}
	pvc.Status.Phase = corev1.ClaimBound
	pvc.Status.AccessModes = pv.Spec.AccessModes
	pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: size}
	_, err = p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(reqCtx, pvc, metav1.UpdateOptions{})
	_, err = done(err, "claim status")
	return err
}

// delete removes a released PV and, if it lies under VolumesDir, its directory.
func (p *provisioner) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err := p.Client.CoreV1().PersistentVolumes().Delete(reqCtx, pv.Name, metav1.DeleteOptions{})
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
