package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/internal/hostconn"
	"github.com/premiscale/premiscale/internal/telemetry"
)

func newHostsCmd(gf *globalFlags) *cobra.Command {
	hostsCmd := &cobra.Command{
		Use:   "hosts",
		Short: "The configured libvirt hosts",
		Args:  cobra.NoArgs,
	}
	var output string
	var timeout time.Duration
	check := &cobra.Command{
		Use:   "check [HOST...]",
		Short: "Check the hosts before the first scale-out: connection, pool, base volumes, networks, domain type, capacity",
		Long: `Connect to every configured host (or the ones named) from this machine, with
the config's URIs and credentials, and check what the groups that use each
host need there: the connection (libvirt and hypervisor versions, size), the
storage pool (present, active, free space), each group's base volume
(present, format, size), its libvirt network or bridge, whether the host
offers the group's domain type (kvm needs /dev/kvm), and whether the group's
VMs fit (one at least, and its max across its hosts). Needs no controller.

Exits 1 if any host has an error; warnings alone exit 0. -o json prints
every finding.`,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			cfg, err := loadConfig(gf)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, h := range cfg.Autoscale.Hosts {
				names = append(names, h.Name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o/--output: must be table or json, got %q", output)
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout: must be > 0, got %s", timeout)
			}
			cfg, err := loadConfig(gf)
			if err != nil {
				return err
			}
			var hosts []activities.HostRef
			for _, h := range cfg.Autoscale.Hosts {
				if len(args) == 0 || slices.Contains(args, h.Name) {
					hosts = append(hosts, activities.HostRef{Name: h.Name})
				}
			}
			for _, a := range args {
				if _, ok := cfg.Host(a); !ok {
					return fmt.Errorf("HOST %q: not in the config's autoscale.hosts", a)
				}
			}
			conns := hostconn.NewHosts(cliLogger())
			defer func() { _ = conns.Close() }()
			lv := &activities.Libvirt{Hosts: conns, Catalog: activities.NewCatalog(cfg)}
			reports := checkHosts(cmd.Context(), lv, hosts, timeout)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return err
				}
			} else {
				printHostReports(cmd.OutOrStdout(), reports)
			}
			var bad []string
			for _, r := range reports {
				if r.Worst() == activities.SeverityError {
					bad = append(bad, r.Host)
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%d of %d hosts not ready for their groups: %s", len(bad), len(reports), strings.Join(bad, ", "))
			}
			return nil
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	check.Flags().DurationVar(&timeout, "timeout", 20*time.Second, "how long each host may take")
	hostsCmd.AddCommand(check, newHostsUploadCmd(gf))
	return hostsCmd
}

func newHostsUploadCmd(gf *globalFlags) *cobra.Command {
	var volume string
	var replace bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "upload IMAGE --volume NAME [HOST...]",
		Short: "Upload a base image to every host of the groups that use it, and verify it there",
		Long: `Create volume NAME in the pool of every host whose groups have
template.baseVolume NAME (or of the hosts named) from the qcow2 or raw IMAGE
on this machine, at the image's own disk size, and check on each host that it
holds the image: its format, its size and its checksum, read back. An
existing volume is replaced only with --replace, and never while a domain
uses it or clones are overlays of it. Exits 1 if any host failed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if volume == "" {
				return errors.New("--volume: the volume's name in the pools is required (the groups' template.baseVolume)")
			}
			cfg, err := loadConfig(gf)
			if err != nil {
				return err
			}
			img, err := activities.InspectImage(args[0])
			if err != nil {
				return fmt.Errorf("IMAGE %s: %w", args[0], err)
			}
			var hosts []string
			if len(args) > 1 {
				for _, a := range args[1:] {
					if _, ok := cfg.Host(a); !ok {
						return fmt.Errorf("HOST %q: not in the config's autoscale.hosts", a)
					}
					hosts = append(hosts, a)
				}
			} else {
				for _, g := range cfg.Autoscale.Groups {
					if g.Template.BaseVolume == volume {
						for _, h := range g.Hosts {
							if !slices.Contains(hosts, h) {
								hosts = append(hosts, h)
							}
						}
					}
				}
				if len(hosts) == 0 {
					return fmt.Errorf("--volume %s: no group has it as template.baseVolume; name the hosts", volume)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %d MiB disk, %d MiB file, sha256 %s\n", img.Path, img.Format, img.VirtualBytes>>20, img.Bytes>>20, img.SHA256)
			conns := hostconn.NewHosts(cliLogger())
			defer func() { _ = conns.Close() }()
			cat := activities.NewCatalog(cfg)
			var failed []string
			for _, name := range hosts {
				hctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				up, err := activities.UploadImage(hctx, conns, cat, activities.HostRef{Name: name}, img, volume, replace)
				cancel()
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: FAILED: %v\n", name, err)
					failed = append(failed, name)
					continue
				}
				verb := "uploaded"
				if up.Replaced {
					verb = "replaced"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s %s in its pool: %s, %d MiB, checksum verified\n", name, verb, up.Volume, up.Format, up.Capacity>>20)
			}
			if len(failed) > 0 {
				return fmt.Errorf("upload failed on %d of %d hosts: %s", len(failed), len(hosts), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&volume, "volume", "", "the volume's name in the hosts' pools (required)")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace an existing volume of that name (never one in use or with clones)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long each host may take")
	return cmd
}

// checkHosts checks the hosts at once, each within timeout, in their order.
func checkHosts(ctx context.Context, lv *activities.Libvirt, hosts []activities.HostRef, timeout time.Duration) []activities.HostReport {
	reports := make([]activities.HostReport, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			r, err := lv.CheckHost(hctx, activities.CheckHostInput{Host: h})
			if err != nil {
				r = activities.HostReport{Host: h.Name, Findings: []activities.Finding{{Check: "connect", Severity: activities.SeverityError, Message: err.Error()}}}
			}
			reports[i] = r
		})
	}
	wg.Wait()
	return reports
}

func printHostReports(w io.Writer, reports []activities.HostReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%s\t", r.Host, strings.ToUpper(r.Worst()))
		if r.Reachable {
			fmt.Fprintf(tw, "libvirt %s, %s %s, %d CPUs, %d MiB\n", r.LibvirtVersion, r.Hypervisor, r.HypervisorVersion, r.CPUs, r.MemoryBytes>>20)
		} else {
			fmt.Fprintln(tw, "unreachable")
		}
		for _, f := range r.Findings {
			what := f.Check
			if f.Group != "" {
				what += " (" + f.Group + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Severity, what, f.Message)
		}
	}
	_ = tw.Flush()
}

// fetchHostChecks reads the last host checks of the controller whose
// metrics listener is listen (telemetry.HostChecksPath), dialing loopback
// for an unspecified address; an error when it is not on this machine, or
// listens on a port chosen at start.
func fetchHostChecks(ctx context.Context, listen string) ([]activities.HostReport, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" || port == "" {
		return nil, fmt.Errorf("controller.metrics.listen %q: no fixed address", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+telemetry.HostChecksPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	var reports []activities.HostReport
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&reports); err != nil {
		return nil, fmt.Errorf("%s: %w", req.URL, err)
	}
	return reports, nil
}

// printHostProblems lists the warnings and errors of reports, or says that
// the hosts checked had none.
func printHostProblems(out io.Writer, reports []activities.HostReport) {
	if len(reports) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	problems := 0
	for _, r := range reports {
		for _, f := range r.Findings {
			if f.Severity == activities.SeverityOK {
				continue
			}
			if problems == 0 {
				fmt.Fprintln(out)
				fmt.Fprintln(w, "HOST\tSEVERITY\tCHECK\tFINDING")
			}
			problems++
			check := f.Check
			if f.Group != "" {
				check += " (" + f.Group + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Host, f.Severity, check, f.Message)
		}
	}
	_ = w.Flush()
	if problems == 0 {
		fmt.Fprintf(out, "\nhosts: %d checked by the controller, no problems\n", len(reports))
		return
	}
	fmt.Fprintf(out, "(the controller's host checks; premiscale hosts check HOST checks again from here)\n")
}
