// Command previous runs the Temporal server of the release before the one
// PremiScale embeds (go.mod pins it), persisted to one SQLite file the way
// PremiScale's embedded server is (WAL, one history shard, the namespace
// registered in the file), until SIGTERM. make-fixture.sh runs it under a
// PremiScale controller to write the database that
// TestADatabaseOfThePreviousServerOpensAndItsGroupsResume opens with the
// current one. It is its own module, so that the main module's build never
// sees a second server version.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/primitives/timestamp"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

func main() {
	db := flag.String("db", "", "SQLite file (created with the schema if missing)")
	port := flag.Int("port", 7233, "frontend port on 127.0.0.1")
	ns := flag.String("namespace", "default", "namespace to register")
	flag.Parse()
	if err := run(*db, *port, *ns); err != nil {
		fmt.Fprintln(os.Stderr, "previous:", err)
		os.Exit(1)
	}
}

func run(db string, port int, ns string) error {
	sqlCfg := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      db,
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "busy_timeout": "5000"},
	}
	if _, err := os.Stat(db); os.IsNotExist(err) {
		if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	nsc, err := sqliteschema.NewNamespaceConfig("active", ns, false, nil)
	if err != nil {
		return err
	}
	nsc.Detail.Config.Retention = timestamp.DurationPtr(72 * time.Hour)
	if err := sqliteschema.CreateNamespaces(sqlCfg, nsc); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	services := map[string]config.Service{string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: port, BindOnIP: "127.0.0.1"}}}
	hosts := map[primitives.ServiceName]static.Hosts{primitives.FrontendService: static.SingleLocalHost(address)}
	for i, name := range []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		p := port + 1 + i
		services[string(name)] = config.Service{RPC: config.RPC{GRPCPort: p, BindOnIP: "127.0.0.1"}}
		hosts[name] = static.SingleLocalHost(net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	var cfg config.Config
	cfg.Global.Membership.MaxJoinDuration = 30 * time.Second
	cfg.Global.Membership.BroadcastAddress = "127.0.0.1"
	cfg.Persistence.DefaultStore = "sqlite-default"
	cfg.Persistence.VisibilityStore = "sqlite-default"
	cfg.Persistence.NumHistoryShards = 1
	cfg.Persistence.DataStores = map[string]config.DataStore{"sqlite-default": {SQL: sqlCfg}}
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10, MasterClusterName: "active", CurrentClusterName: "active",
		ClusterInformation: map[string]cluster.ClusterInformation{"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: address}},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = services
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = address
	srv, err := temporal.NewServer(
		temporal.WithConfig(&cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(log.NewCLILogger()),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key():              true,
			dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key(): true,
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key():       100,
		}),
	)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Println("previous: serving", address, "on", db)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return srv.Stop()
}
