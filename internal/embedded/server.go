// Package embedded runs a Temporal server inside the calling process, persisted
// to one SQLite file in WAL mode, the way `temporal server start-dev
// --db-filename` does.
//
// The server runs the frontend, history, matching and worker services with one
// history shard. Only the frontend listens on Options.Host:Options.Port; the
// three internal services bind free loopback ports chosen at each start (as the
// Temporal CLI's dev server and temporaltest do), so nothing but the frontend
// port has to be free and nothing but the SQLite file is read or written.
package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	postgresplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/primitives/timestamp"
	"go.temporal.io/server/common/rpc/encryption"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
)

const (
	// DefaultHost is the frontend listen address used when Options.Host is empty.
	DefaultHost = "127.0.0.1"
	// DefaultPort is the frontend gRPC port used when Options.Port is zero.
	DefaultPort = 7233
	// DefaultNamespace is the namespace registered when Options.Namespace is empty.
	DefaultNamespace = "default"
	// NamespaceRetention is how long closed executions are kept in a namespace this package registers.
	NamespaceRetention = 72 * time.Hour

	// readyTimeout bounds Start's wait for the frontend when ctx has no deadline.
	readyTimeout = time.Minute
	clusterName  = "active"
	storeName    = "sqlite-default"
	// The stores' names on PostgreSQL.
	postgresStoreName   = "postgres-default"
	visibilityStoreName = "postgres-visibility"
	// Schemas in go.temporal.io/server/schema, set up at each start.
	postgresSchema           = "postgresql/v12/temporal"
	postgresVisibilitySchema = "postgresql/v12/visibility"
)

// Options configure an embedded server.
type Options struct {
	DBPath    string       // SQLite file; created (with schema) if missing, reused if present; unused with Postgres
	Postgres  *Postgres    // if set, PostgreSQL instead of the SQLite file
	Host      string       // listen address for frontend gRPC, default "127.0.0.1"
	Port      int          // frontend gRPC port, default 7233
	Namespace string       // registered if missing, default "default"
	Logger    *slog.Logger // optional; server logs go here at warn+ level; nil discards them
	// TLS, if set, makes the frontend serve mutual TLS.
	TLS *TLS
	// Access, if set (it needs TLS), authorizes every call to the frontend
	// by the caller's certificate; unset, every client with a certificate
	// may do anything.
	Access *Access
}

// TLS is the frontend's mutual TLS. The three internal services still talk
// to each other in plaintext on loopback ports.
type TLS struct {
	// Server is the frontend's listener configuration; it must require and
	// verify client certificates (mtls.Server.Config builds one).
	Server *tls.Config
	// Client is what the server's own worker service, and Start's readiness
	// probe, present to the frontend: a certificate the frontend accepts,
	// and the roots that verify the frontend's.
	Client *tls.Config
}

// Postgres is a PostgreSQL database for the server. It also uses
// Database+"_visibility". Start creates both if missing (connecting to the
// "postgres" database to do so) and sets up or upgrades their schemas to
// what this server version needs.
type Postgres struct {
	Addr, User, Password, Database string
	// Params are libpq connection settings (sslmode, sslrootcert, ...).
	Params map[string]string
}

// VisibilityDatabase is the database of the server's visibility store.
func (p *Postgres) VisibilityDatabase() string { return p.Database + "_visibility" }

func (p *Postgres) sql(db string) *config.SQL {
	attrs := map[string]string{}
	for k, v := range p.Params {
		attrs[k] = v
	}
	return &config.SQL{
		PluginName:        postgresplugin.PluginName,
		ConnectAddr:       p.Addr,
		ConnectProtocol:   "tcp",
		User:              p.User,
		Password:          p.Password,
		DatabaseName:      db,
		ConnectAttributes: attrs,
		MaxConns:          20,
		MaxIdleConns:      20,
	}
}

// Server is a running embedded Temporal server.
type Server struct {
	srv      temporal.Server
	logger   warnLogger
	address  string
	stopOnce sync.Once
	stopErr  error
}

// Start creates or opens the SQLite database, registers the namespace if it is
// missing, starts the server and returns once the frontend answers and the
// namespace is visible through it; an error names the step that failed.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	logger := warnLogger{l: opts.Logger, stopped: new(atomic.Bool)}
	if logger.l == nil {
		logger.l = slog.New(slog.DiscardHandler)
	}
	// Checked here because upstream treats a failed listen as fatal.
	listen := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: listen on %s: %w", listen, err)
	}
	_ = l.Close()
	var sqlCfg, visCfg *config.SQL
	if pg := opts.Postgres; pg != nil {
		sqlCfg, visCfg = pg.sql(pg.Database), pg.sql(pg.VisibilityDatabase())
		if err := ensurePostgres(sqlCfg, postgresSchema); err != nil {
			return nil, err
		}
		if err := ensurePostgres(visCfg, postgresVisibilitySchema); err != nil {
			return nil, err
		}
	} else {
		sqlCfg = sqliteConfig(opts.DBPath)
		visCfg = sqlCfg
		m, err := ensureSchema(opts.DBPath)
		if err != nil {
			return nil, err
		}
		if m.Backup != "" {
			logger.l.Warn("embedded temporal: migrated the SQLite database to this server's schema", "db", opts.DBPath, "from", m.From, "to", m.To, "copy_before", m.Backup)
		}
	}
	if err := registerNamespace(sqlCfg, opts.Namespace); err != nil {
		return nil, err
	}

	address := net.JoinHostPort(dialHost(opts.Host), strconv.Itoa(opts.Port))
	var srv temporal.Server
	for attempt := 1; ; attempt++ {
		srv, err = build(opts, sqlCfg, visCfg, address, logger)
		if err == nil || attempt == maxPortAttempts || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		// An internal service's port was taken between choosing and binding
		// it, or (seen in the restart test) the frontend's own port is
		// released a moment after a previous server on it stopped.
		logger.l.Warn("embedded temporal: port taken, retrying with new internal ports", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	s := &Server{srv: srv, logger: logger, address: address}
	if err := waitReady(ctx, address, opts.Namespace, opts.clientTLS()); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// maxPortAttempts bounds Start's retries when an internal port is taken.
const maxPortAttempts = 8

// build configures (with fresh internal ports), creates and starts a server.
func build(opts Options, sqlCfg, visCfg *config.SQL, address string, logger warnLogger) (temporal.Server, error) {
	cfg, hosts, err := serverConfig(opts, sqlCfg, visCfg, address)
	if err != nil {
		return nil, err
	}
	var srv temporal.Server
	err = recoverFatal(func() (err error) {
		serverOpts := []temporal.ServerOption{
			temporal.WithConfig(cfg),
			temporal.ForServices(temporal.DefaultServices),
			temporal.WithStaticHosts(hosts),
			temporal.WithLogger(logger),
			temporal.WithDynamicConfigClient(dynamicConfig()),
		}
		if a := opts.Access; a != nil {
			serverOpts = append(serverOpts,
				temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper{workers: a.Workers} }),
				temporal.WithAuthorizer(&authorizer{a: *a}))
		}
		if opts.TLS != nil {
			serverOpts = append(serverOpts, temporal.WithTLSConfigFactory(&encryption.FixedTLSConfigProvider{
				FrontendServerConfig: opts.TLS.Server,
				FrontendClientConfig: opts.TLS.Client,
			}))
		}
		srv, err = temporal.NewServer(serverOpts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: build server: %w", err)
	}
	if err := recoverFatal(srv.Start); err != nil {
		_ = recoverFatal(func() error { return srv.Stop() })
		return nil, fmt.Errorf("embedded temporal: start server on %s: %w", address, err)
	}
	return srv, nil
}

// Address returns the host:port a client dials to reach the frontend.
func (s *Server) Address() string { return s.address }

// Stop shuts the server down and silences its logs; it is safe to call more than once.
//
// Upstream leaves some things behind until the process exits: the SQLite
// plugin never closes its pooled connection to the file, and the worker
// service never stops its system SDK workers (scanners, parent-close policy),
// which keep polling Address and reach a server started there again.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		// Shutdown logs and the leftover pollers' failures are noise.
		s.logger.stopped.Store(true)
		if err := s.srv.Stop(); err != nil {
			s.stopErr = fmt.Errorf("embedded temporal: stop server: %w", err)
		}
	})
	return s.stopErr
}

func (o Options) clientTLS() *tls.Config {
	if o.TLS == nil {
		return nil
	}
	return o.TLS.Client
}

func (o Options) withDefaults() (Options, error) {
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	var errs []error
	if o.DBPath == "" && o.Postgres == nil {
		errs = append(errs, errors.New("embedded temporal: DBPath or Postgres is required"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("embedded temporal: port %d out of range 1-65535", o.Port))
	}
	if o.TLS != nil && (o.TLS.Server == nil || o.TLS.Client == nil) {
		errs = append(errs, errors.New("embedded temporal: TLS needs both a server and a client configuration"))
	}
	if o.Access != nil && o.TLS == nil {
		errs = append(errs, errors.New("embedded temporal: Access needs TLS: callers are told apart by their certificates"))
	}
	if o.Access != nil && o.Access.Namespace == "" {
		a := *o.Access
		a.Namespace = o.Namespace
		o.Access = &a
	}
	if net.ParseIP(o.Host) == nil {
		errs = append(errs, fmt.Errorf("embedded temporal: host %q is not an IP address", o.Host))
	}
	return o, errors.Join(errs...)
}

// sqliteConfig describes the database file for the server's SQLite plugin.
// Keys other than SQLite URI parameters become `_pragma=key(value)`, so
// pragmas carry no leading underscore. WAL lets readers run beside the one
// writer and makes commits about 3x faster than the rollback journal.
func sqliteConfig(path string) *config.SQL {
	return &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: path,
		ConnectAttributes: map[string]string{
			"mode":         "rwc",
			"journal_mode": "wal",
			"busy_timeout": "5000", // wait, rather than fail, while another process (a sqlite3 shell) holds a lock
		},
	}
}

// ensureSchema creates the database with Temporal's schema if path does not
// exist, or migrates an existing one to this server's schema
// (migrateSQLite). A new schema is written to a temporary file that is
// renamed into place, so a file at path always holds a complete schema. The
// temporary file uses the rollback journal, so everything is in the main
// file when it is renamed.
func ensureSchema(path string) (sqliteMigration, error) {
	_, err := os.Stat(path)
	if err == nil {
		m, err := migrateSQLite(path, time.Now())
		if err != nil {
			return m, fmt.Errorf("embedded temporal: sqlite %q: %w", path, err)
		}
		return m, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return sqliteMigration{}, fmt.Errorf("embedded temporal: open sqlite %q: %w", path, err)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return sqliteMigration{}, fmt.Errorf("embedded temporal: open sqlite %q: %w", path, err)
	}
	// A unique name: the plugin caches connections by file name for the life of the process.
	tmp := fmt.Sprintf("%s.init-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	cfg := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      tmp,
		ConnectAttributes: map[string]string{"mode": "rwc"},
	}
	if err := sqliteschema.SetupSchema(cfg); err != nil {
		_ = os.Remove(tmp)
		return sqliteMigration{}, fmt.Errorf("embedded temporal: create schema in sqlite %q: %w", path, err)
	}
	if err := markSQLite(tmp, time.Now()); err != nil {
		_ = os.Remove(tmp)
		return sqliteMigration{}, fmt.Errorf("embedded temporal: record the schema version in sqlite %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return sqliteMigration{}, fmt.Errorf("embedded temporal: create sqlite %q: %w", path, err)
	}
	return sqliteMigration{To: sqliteschema.Version}, nil
}

// ensurePostgres creates the database of cfg if it is missing, then sets
// up Temporal's schema (named in the server's embedded schema files) or
// upgrades it to the latest version. Idempotent, so it runs at each start.
func ensurePostgres(cfg *config.SQL, schemaName string) error {
	where := fmt.Sprintf("postgres database %q at %s", cfg.DatabaseName, cfg.ConnectAddr)
	// The plugin connects when the handle is made, logs why it could not
	// and hands out a handle that fails every call with "no usable
	// database connection": the logged error is the one to report.
	connect := func(db string) (*sqltool.Connection, error) {
		logger := &errorLogger{Logger: log.NewNoopLogger()}
		c := *cfg
		c.DatabaseName = db
		conn, err := sqltool.NewConnection(&c, logger)
		if err == nil && logger.err != nil {
			conn.Close()
			err = logger.err
		}
		return conn, err
	}
	conn, err := connect(cfg.DatabaseName)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		admin, aerr := connect("postgres")
		if aerr != nil {
			return fmt.Errorf("embedded temporal: %s does not exist; connect to database \"postgres\" to create it: %w", where, aerr)
		}
		aerr = admin.CreateDatabase(cfg.DatabaseName)
		admin.Close()
		if aerr != nil {
			return fmt.Errorf("embedded temporal: create %s: %w", where, aerr)
		}
		conn, err = connect(cfg.DatabaseName)
	}
	if err != nil {
		return fmt.Errorf("embedded temporal: connect to %s: %w", where, err)
	}
	defer conn.Close()
	if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, log.NewNoopLogger()).Run(); err != nil {
		return fmt.Errorf("embedded temporal: set up schema versioning in %s: %w", where, err)
	}
	if err := schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, log.NewNoopLogger()).Run(); err != nil {
		return fmt.Errorf("embedded temporal: set up schema %s in %s: %w", schemaName, where, err)
	}
	return nil
}

// errorLogger keeps the last error logged at error level.
type errorLogger struct {
	log.Logger
	err error
}

func (l *errorLogger) Error(msg string, tags ...tag.Tag) {
	for _, t := range tags {
		if z, ok := t.(tag.ZapTag); ok {
			if e, ok := z.Field().Interface.(error); ok {
				l.err = e
			}
		}
	}
}

// registerNamespace writes the namespace straight into the database unless one
// of that name exists, so it is there before the server first loads namespaces.
func registerNamespace(cfg *config.SQL, name string) error {
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, name, false, nil)
	if err != nil {
		return fmt.Errorf("embedded temporal: register namespace %q: %w", name, err)
	}
	ns.Detail.Config.Retention = timestamp.DurationPtr(NamespaceRetention)
	if err := sqliteschema.CreateNamespaces(cfg, ns); err != nil {
		return fmt.Errorf("embedded temporal: register namespace %q in %s %q: %w", name, cfg.PluginName, cfg.DatabaseName, err)
	}
	return nil
}

// serverConfig builds the whole server configuration in memory; no file is read.
func serverConfig(opts Options, sqlCfg, visCfg *config.SQL, address string) (*config.Config, map[primitives.ServiceName]static.Hosts, error) {
	services := map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: opts.Port, BindOnIP: opts.Host}},
	}
	hosts := map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(net.JoinHostPort(DefaultHost, strconv.Itoa(opts.Port))),
	}
	internal := []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService}
	ports, err := freePorts(len(internal))
	if err != nil {
		return nil, nil, fmt.Errorf("embedded temporal: pick ports for internal services: %w", err)
	}
	for i, name := range internal {
		port := ports[i]
		services[string(name)] = config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: DefaultHost}}
		hosts[name] = static.SingleLocalHost(net.JoinHostPort(DefaultHost, strconv.Itoa(port)))
	}

	var cfg config.Config
	cfg.Global.Membership.MaxJoinDuration = 30 * time.Second
	cfg.Global.Membership.BroadcastAddress = DefaultHost
	cfg.Persistence.DefaultStore = storeName
	cfg.Persistence.VisibilityStore = storeName
	cfg.Persistence.NumHistoryShards = 1
	cfg.Persistence.DataStores = map[string]config.DataStore{storeName: {SQL: sqlCfg}}
	if visCfg != sqlCfg {
		cfg.Persistence.DefaultStore = postgresStoreName
		cfg.Persistence.VisibilityStore = visibilityStoreName
		cfg.Persistence.DataStores = map[string]config.DataStore{
			postgresStoreName:   {SQL: sqlCfg},
			visibilityStoreName: {SQL: visCfg},
		}
	}
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			// ClusterID is left empty: the server generates one on first start and keeps the stored one after.
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: address},
		},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = services
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = address // the worker service's own client
	return &cfg, hosts, nil
}

// dynamicConfig returns the server's dynamic config overrides; every other key keeps its default.
func dynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// Updates are on by default in server v1.32; pinned because the
		// autoscaler's workflows depend on them.
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key():              true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key(): true,
		// Mutable-state cache entries, 128000 by default: sized for a cluster, not one process (the dev server uses 8096).
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8096,
		// List/count calls per second, 10 by default: status commands list workflows (the dev server uses 100).
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// Timers fire up to this late (1s by default): group evaluations run on
		// a timer, and decision latency is measured against their interval.
		// One process on SQLite can afford reading timer tasks more often.
		dynamicconfig.TimerProcessorMaxTimeShift.Key(): 100 * time.Millisecond,
	}
}

// waitReady polls the frontend until it answers DescribeNamespace for ns.
func waitReady(ctx context.Context, address, ns string, tc *tls.Config) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	var c client.Client
	var lastErr error
	for {
		if c == nil {
			c, lastErr = client.DialContext(ctx, client.Options{HostPort: address, Namespace: ns, Logger: quiet, ConnectionOptions: client.ConnectionOptions{TLS: tc}})
		}
		if c != nil {
			_, lastErr = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
			if lastErr == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if c != nil {
				c.Close()
			}
			return fmt.Errorf("embedded temporal: wait for namespace %q at %s: %w", ns, address, errors.Join(ctx.Err(), lastErr))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePorts asks the kernel for n distinct free loopback TCP ports, holding
// them all open until every one is chosen so that none is handed out twice.
// Another process may still take one before the server binds it; Start
// retries with new ports when that happens.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(DefaultHost, "0"))
		if err != nil {
			return nil, err
		}
		defer func() { _ = l.Close() }()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// dialHost turns a wildcard listen address into one a client can dial.
func dialHost(host string) string {
	ip := net.ParseIP(host)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return host
	case ip.To4() != nil:
		return DefaultHost
	default:
		return "::1"
	}
}

// fatalError is the panic value of warnLogger.Fatal and warnLogger.Panic.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

// recoverFatal runs f and turns a fatalError panic into an error; other panics
// go on.
func recoverFatal(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	return f()
}

// warnLogger passes the server's warnings and errors to a slog.Logger and drops
// the rest, and everything once the server is stopped. Panic and Fatal log an
// error and panic with a fatalError: the server calls them where it cannot go
// on (zap would exit the process), and Start turns such a panic into an error.
type warnLogger struct {
	l       *slog.Logger
	stopped *atomic.Bool
}

var _ log.Logger = warnLogger{}

func (w warnLogger) Debug(string, ...tag.Tag)           {}
func (w warnLogger) Info(string, ...tag.Tag)            {}
func (w warnLogger) Warn(msg string, tags ...tag.Tag)   { w.log(slog.LevelWarn, msg, tags) }
func (w warnLogger) Error(msg string, tags ...tag.Tag)  { w.log(slog.LevelError, msg, tags) }
func (w warnLogger) DPanic(msg string, tags ...tag.Tag) { w.log(slog.LevelError, msg, tags) }
func (w warnLogger) Panic(msg string, tags ...tag.Tag)  { w.fatal(msg, tags) }
func (w warnLogger) Fatal(msg string, tags ...tag.Tag)  { w.fatal(msg, tags) }

func (w warnLogger) fatal(msg string, tags []tag.Tag) {
	w.log(slog.LevelError, msg, tags)
	var b strings.Builder
	b.WriteString("temporal server: ")
	b.WriteString(msg)
	for _, t := range tags {
		fmt.Fprintf(&b, " %s=%v", t.Key(), t.Value())
	}
	panic(fatalError{msg: b.String()})
}

func (w warnLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if w.stopped.Load() || !w.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(tags)+1)
	attrs = append(attrs, slog.String("component", "temporal"))
	for _, t := range tags {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	w.l.LogAttrs(ctx, level, msg, attrs...)
}
