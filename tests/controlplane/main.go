// Command controlplane runs a small, real Kubernetes control plane in one
// process, on loopback only, for the operator's tests:
//
//   - etcd (embedded, go.etcd.io/etcd/server/v3/embed), data in DIR/etcd,
//     on two free loopback ports;
//   - kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver/app) with TLS,
//     client-certificate authentication, RBAC authorization and a
//     service-account token issuer;
//   - kube-controller-manager (k8s.io/kubernetes/cmd/kube-controller-manager/app)
//     running the namespace, garbage-collector, serviceaccount,
//     serviceaccount-token, root-ca-cert-publisher and clusterrole-aggregation
//     controllers (by default).
//
// There is no scheduler and no kubelet: pods are stored but never run.
//
// Usage:
//
//	controlplane --dir DIR [--v N] [--controllers LIST] [--port N]
//	controlplane --dir DIR --probe   # exit 0 iff DIR/admin.kubeconfig reaches a ready /readyz
//
// Files in DIR:
//
//	controlplane.pid   pid of this process (removed on clean exit)
//	pki/               CA, apiserver serving cert, admin client cert,
//	                   service-account key pair (regenerated each start)
//	etcd/              etcd data (wiped at each start: every start is a fresh cluster)
//	admin.kubeconfig   written once /readyz is ok and the controllers have
//	                   published the default ServiceAccount, kube-root-ca.crt
//	                   and the aggregated admin ClusterRole
//	ready              marker written right after admin.kubeconfig (removed on exit)
//
// SIGTERM or SIGINT stops the controller manager, the apiserver and etcd in
// that order and exits 0; a second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// defaultControllers start fast and need no nodes or cloud. clusterrole-
// aggregation fills the aggregated admin/edit/view ClusterRoles.
const defaultControllers = "namespace,garbagecollector,serviceaccount,serviceaccount-token,root-ca-cert-publisher,clusterrole-aggregation"

func main() {
	dir := flag.String("dir", "", "state directory (required)")
	verbosity := flag.Int("v", -1, "log verbosity of the Kubernetes components: -1 = errors only, 0 = normal, 2+ = debug")
	controllers := flag.String("controllers", defaultControllers, "kube-controller-manager --controllers value")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 = a free port)")
	probeOnly := flag.Bool("probe", false, "only check that DIR/admin.kubeconfig reaches a ready /readyz, then exit 0 (ready) or 1")
	flag.Parse()
	if *dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: controlplane --dir DIR [--v N] [--controllers LIST] [--port N] | --dir DIR --probe")
		os.Exit(2)
	}
	if *probeOnly {
		if err := probe(filepath.Join(*dir, "admin.kubeconfig")); err != nil {
			fmt.Fprintf(os.Stderr, "controlplane: not ready: %v\n", err)
			os.Exit(1)
		}
		return
	}
	setupLogging(*verbosity)
	if err := run(*dir, *port, *controllers); err != nil {
		logf("error: %v", err)
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s controlplane: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// setupLogging routes klog (and with it every contextual logger of the
// components) through one text logger. At the default -1 only errors pass.
func setupLogging(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	kv := v
	if kv < 0 {
		kv = 0
	}
	_ = fs.Set("v", strconv.Itoa(kv))
	_ = fs.Set("logtostderr", "true")
	cfg := textlogger.NewConfig(textlogger.Verbosity(v), textlogger.Output(os.Stderr))
	klog.SetLogger(textlogger.NewLogger(cfg))
}

func run(dir string, port int, controllers string) error {
	start := time.Now()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	readyFile := filepath.Join(dir, "ready")
	kubeconfigFile := filepath.Join(dir, "admin.kubeconfig")
	pidFile := filepath.Join(dir, "controlplane.pid")
	for _, f := range []string{readyFile, kubeconfigFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)
	defer os.Remove(readyFile)

	// Signals: the first cancels ctx (graceful stop), the second exits.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigCh
		logf("received %v, shutting down", s)
		cancel()
		<-sigCh
		logf("second signal, exiting now")
		os.Exit(1)
	}()

	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("generate pki: %w", err)
	}

	// --- etcd ---------------------------------------------------------
	etcdDir := filepath.Join(dir, "etcd")
	if err := os.RemoveAll(etcdDir); err != nil {
		return err
	}
	etcd, etcdURL, err := startEtcd(etcdDir)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	var etcdOnce sync.Once
	stopEtcd := func() {
		etcdOnce.Do(func() {
			// etcd logs its closing listeners as errors: silence them.
			etcdLogLevel.SetLevel(zapcore.FatalLevel)
			etcd.Close()
		})
	}
	defer stopEtcd()
	exited := make(chan struct{}) // closed when any component returns
	var exitedOnce sync.Once
	etcdComp := goComponent("etcd", exited, &exitedOnce, func() error {
		err, ok := <-etcd.Err()
		if !ok {
			return nil
		}
		return err
	})
	logf("etcd serving on %s", etcdURL)

	// --- kube-apiserver -----------------------------------------------
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen for kube-apiserver: %w", err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	apiCtx, apiCancel := context.WithCancel(context.Background())
	defer apiCancel()
	runAPI, err := prepareAPIServer(apiCtx, ln, port, etcdURL, p)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	apiComp := goComponent("kube-apiserver", exited, &exitedOnce, runAPI)
	logf("kube-apiserver starting on %s", server)

	adminConfig := kubeconfig(server, p)
	restConfig, err := clientcmd.NewDefaultClientConfig(*adminConfig, nil).ClientConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	kcmKubeconfig := filepath.Join(p.dir, "controller-manager.kubeconfig")
	if err := clientcmd.WriteToFile(*adminConfig, kcmKubeconfig); err != nil {
		return err
	}

	kcmCtx, kcmCancel := context.WithCancel(context.Background())
	defer kcmCancel()
	var kcmComp *component

	// stopAll stops the components in reverse order, bounded in time.
	stopAll := func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if kcmComp != nil {
				kcmCancel()
				kcmComp.wait(6 * time.Second)
			}
			apiCancel()
			apiComp.wait(20 * time.Second)
			stopEtcd()
		}()
		select {
		case <-done:
		case <-time.After(45 * time.Second):
			logf("shutdown took longer than 45s, exiting anyway")
		}
	}
	components := func() []*component {
		if kcmComp == nil {
			return []*component{etcdComp, apiComp}
		}
		return []*component{etcdComp, apiComp, kcmComp}
	}

	if err := waitFor(ctx, exited, components(), "kube-apiserver /readyz", func(c context.Context) bool {
		var status int
		client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(c).StatusCode(&status)
		return status == 200
	}); err != nil {
		stopAll()
		return err
	}
	logf("kube-apiserver ready after %.1fs", time.Since(start).Seconds())

	// --- kube-controller-manager --------------------------------------
	runKCM, err := prepareControllerManager(kcmCtx, kcmKubeconfig, controllers, p)
	if err != nil {
		stopAll()
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	kcmComp = goComponent("kube-controller-manager", exited, &exitedOnce, runKCM)

	// The controllers are working once they have published their objects.
	want := strings.Split(controllers, ",")
	has := func(name string) bool {
		for _, w := range want {
			if w == name || w == "*" {
				return true
			}
		}
		return false
	}
	// Errors (not found yet, apiserver busy) just mean "poll again".
	if err := waitFor(ctx, exited, components(), "controllers", func(c context.Context) bool {
		if has("serviceaccount") {
			if _, err := client.CoreV1().ServiceAccounts("default").Get(c, "default", metav1.GetOptions{}); err != nil {
				return false
			}
		}
		if has("root-ca-cert-publisher") {
			if _, err := client.CoreV1().ConfigMaps("default").Get(c, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
				return false
			}
		}
		if has("clusterrole-aggregation") {
			role, err := client.RbacV1().ClusterRoles().Get(c, "admin", metav1.GetOptions{})
			if err != nil || len(role.Rules) == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		stopAll()
		return err
	}

	// --- ready ---------------------------------------------------------
	tmp := kubeconfigFile + ".tmp"
	if err := clientcmd.WriteToFile(*adminConfig, tmp); err != nil {
		stopAll()
		return err
	}
	if err := os.Rename(tmp, kubeconfigFile); err != nil {
		stopAll()
		return err
	}
	if err := os.WriteFile(readyFile, []byte(server+"\n"), 0o644); err != nil {
		stopAll()
		return err
	}
	logf("ready after %.1fs: %s (kubeconfig %s)", time.Since(start).Seconds(), server, kubeconfigFile)

	var runErr error
	select {
	case <-ctx.Done():
	case <-exited:
		runErr = exitError(components())
	}
	os.Remove(readyFile)
	stopAll()
	if runErr == nil {
		logf("stopped")
	}
	return runErr
}

// component is a running part of the control plane.
type component struct {
	name string
	done chan struct{} // closed when run returns; err is then set
	err  error
}

// goComponent runs f in a goroutine; when it returns, exited is closed
// (once, for whichever component returns first).
func goComponent(name string, exited chan struct{}, once *sync.Once, f func() error) *component {
	c := &component{name: name, done: make(chan struct{})}
	go func() {
		c.err = f()
		close(c.done)
		once.Do(func() { close(exited) })
	}()
	return c
}

func (c *component) wait(timeout time.Duration) {
	select {
	case <-c.done:
	case <-time.After(timeout):
		logf("%s did not stop in %v, going on", c.name, timeout)
	}
}

// exitError describes the component(s) that have returned.
func exitError(cs []*component) error {
	var msgs []string
	for _, c := range cs {
		select {
		case <-c.done:
			msgs = append(msgs, fmt.Sprintf("%s exited: %v", c.name, c.err))
		default:
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// waitFor polls cond every 200ms until it holds, ctx ends, or a component
// returns.
func waitFor(ctx context.Context, exited chan struct{}, cs []*component, what string, cond func(context.Context) bool) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok := cond(c)
		cancel()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", what)
		case <-exited:
			return fmt.Errorf("while waiting for %s: %w", what, exitError(cs))
		case <-t.C:
		}
	}
}

// etcdLogLevel is the level of etcd's logger: errors, one console line each.
var etcdLogLevel = zap.NewAtomicLevelAt(zapcore.ErrorLevel)

func etcdLogger() *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), etcdLogLevel)
	return zap.New(core).Named("etcd")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startEtcd starts a single-member etcd on two free loopback ports. A port
// taken between choosing and binding makes it retry with new ports.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		clientPort, err := freePort()
		if err != nil {
			return nil, "", err
		}
		peerPort, err := freePort()
		if err != nil {
			return nil, "", err
		}
		clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
		peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))

		cfg := embed.NewConfig()
		cfg.Name = "controlplane"
		cfg.Dir = dir
		cfg.ListenClientUrls = []url.URL{*clientURL}
		cfg.AdvertiseClientUrls = []url.URL{*clientURL}
		cfg.ListenPeerUrls = []url.URL{*peerURL}
		cfg.AdvertisePeerUrls = []url.URL{*peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.Logger = "zap"
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"stderr"}
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger())
		// A throw-away test cluster: durability is not needed, speed is.
		cfg.UnsafeNoFsync = true

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			os.RemoveAll(dir)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, clientURL.String(), nil
		case err := <-e.Err():
			e.Close()
			lastErr = err
			os.RemoveAll(dir)
		case <-time.After(60 * time.Second):
			e.Close()
			return nil, "", errors.New("etcd did not become ready in 60s")
		}
	}
	return nil, "", lastErr
}

// prepareAPIServer validates the kube-apiserver options; the returned
// function runs it until ctx ends.
func prepareAPIServer(ctx context.Context, ln net.Listener, port int, etcdURL string, p *pki) (func() error, error) {
	s := apiserveroptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--cert-dir=" + p.dir,
		"--client-ca-file=" + p.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saKey,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// 127.0.0.1 is not a valid Endpoints address; the kubernetes
		// Service keeps no endpoints here.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	s.SecureServing.Listener = ln
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("invalid options: %v", errs)
	}
	return func() error { return apiserverapp.Run(ctx, completed) }, nil
}

// prepareControllerManager builds the kube-controller-manager config; the
// returned function runs it until ctx ends.
func prepareControllerManager(ctx context.Context, kubeconfigFile, controllers string, p *pki) (func() error, error) {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	all, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	nfs := s.Flags(all, disabled, aliases)
	s.ParsedFlags = &nfs
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + kubeconfigFile,
		"--leader-elect=false",
		"--controllers=" + controllers,
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--profiling=false",
		"--controller-shutdown-timeout=3s",
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	c, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, err
	}
	return func() error { return kcmapp.Run(ctx, c.Complete()) }, nil
}

// probe GETs /readyz with the credentials of a kubeconfig file.
func probe(kubeconfigFile string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigFile)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %s", body)
	}
	return nil
}

// kubeconfig builds the admin kubeconfig with embedded credentials.
func kubeconfig(server string, p *pki) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["controlplane"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["admin@controlplane"] = &clientcmdapi.Context{Cluster: "controlplane", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "admin@controlplane"
	return cfg
}
