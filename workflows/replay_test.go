package workflows_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"

	"github.com/premiscale/premiscale/worker"
)

// TestRecordedHistoriesReplay replays histories recorded from real runs
// (test/history_test.go with RECORD_HISTORY=1, and the ones in
// ../shared/histories that wedged a group) against the current workflow
// code. A change that would break running groups fails here.
//
// Each history is replayed whole and also cut after the commands of every
// completed workflow task, because that is what a freshly started worker
// checks: it replays the history and matches the last completed task's
// commands before it runs the new task. The SDK's replayer does not compare
// the commands of a history's last completed task with the code's when the
// history ends with the next task's start (it takes it as partial), so the
// whole file alone can pass while a restarted worker fails the same task
// forever: the scalein_cancel_markers histories did exactly that. (Cutting
// later, before the next task's start, would feed the replayer new events
// such as a cancellation request, which make commands that only the next
// task records.)
func TestRecordedHistoriesReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/*_history.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			h := loadHistory(t, f)
			replayHistory(t, h, len(h.Events))
			for i, e := range h.Events {
				if e.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
					continue
				}
				end := i + 1
				for end < len(h.Events) && isCommandEvent(h.Events[end].GetEventType()) {
					end++
				}
				if end < len(h.Events) {
					replayHistory(t, h, end)
				}
			}
		})
	}
}

// TestReplayCatchesTheCommandsOfTheLastTask proves the cut replay above can
// fail: the history of a group whose last task scaled in is replayed with
// its last task's commands tampered (a timer's ID moved); the whole
// history still replays, the cut one must not.
func TestReplayCatchesTheCommandsOfTheLastTask(t *testing.T) {
	h := loadHistory(t, "testdata/scalein_cancel_markers_history.json")
	const cut = 93 // events 1..93: task 79's commands (80 completed it)
	var timer *historypb.TimerStartedEventAttributes
	for _, e := range h.Events[:cut] {
		if a := e.GetTimerStartedEventAttributes(); a != nil {
			timer = a
		}
	}
	if timer == nil {
		t.Fatal("no timer in the first events")
	}
	timer.TimerId = "9999"
	if err := replay(t, &historypb.History{Events: h.Events[:cut]}); err == nil {
		t.Fatal("a history whose last task's timer ID was changed replayed cleanly")
	}
}

// isCommandEvent reports whether an event records a command of the task
// completed before it (as the SDK counts them).
func isCommandEvent(t enumspb.EventType) bool {
	switch t {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
		enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
		enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
		enumspb.EVENT_TYPE_TIMER_STARTED,
		enumspb.EVENT_TYPE_TIMER_CANCELED,
		enumspb.EVENT_TYPE_MARKER_RECORDED,
		enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
		enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
		enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
		enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
		enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
		enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED,
		enumspb.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED:
		return true
	}
	return false
}

func loadHistory(t *testing.T, path string) *historypb.History {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h historypb.History
	opts := temporalproto.CustomJSONUnmarshalOptions{DiscardUnknown: true}
	if err := opts.Unmarshal(data, &h); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &h
}

// replayHistory replays the first n events of h and fails the test if the
// workflow code does not reproduce them.
func replayHistory(t *testing.T, h *historypb.History, n int) {
	t.Helper()
	if err := replay(t, &historypb.History{Events: h.Events[:n]}); err != nil {
		t.Fatalf("replay of the first %d events: %v", n, err)
	}
}

func replay(t *testing.T, h *historypb.History, extra ...interceptor.WorkerInterceptor) error {
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError + 1})))
	return worker.Replay(logger, h, extra...)
}

// incompatibleHistories are recorded histories that today's code cannot
// replay, kept to show it, each with the change that broke it and why that
// change stays as it is. A file here that starts replaying fails
// TestIncompatibleHistoriesStillFail: move it back to testdata/.
var incompatibleHistories = map[string]string{
	"prerefill_warm_groupworkflow_history.json": "commit 9d26d5f (warm pools refill only once the group is whole) changed " +
		"decisions without GetVersion. This history, recorded before it, refilled the pool while members were " +
		"being activated; today's code does not. Putting the change behind GetVersion now would break instead " +
		"the histories recorded in the six days since (warm_groupworkflow_history.json fails then), so it " +
		"stays: a warm-pool group started by code of 2026-12-01 19:57-21:28 UTC that refilled during an " +
		"activation needs `temporal workflow reset` to its last continue-as-new, or to before that refill.",
}

// TestIncompatibleHistoriesStillFail replays each history of
// testdata/incompatible and expects the failure incompatibleHistories
// documents: a non-determinism error, not a pass and not another error.
func TestIncompatibleHistoriesStillFail(t *testing.T) {
	files, err := filepath.Glob("testdata/incompatible/*_history.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(incompatibleHistories) {
		t.Errorf("testdata/incompatible holds %d histories, incompatibleHistories documents %d", len(files), len(incompatibleHistories))
	}
	for _, f := range files {
		why, ok := incompatibleHistories[filepath.Base(f)]
		if !ok {
			t.Errorf("%s: not documented in incompatibleHistories", f)
			continue
		}
		err := replay(t, loadHistory(t, f))
		if err == nil {
			t.Errorf("%s replays now: move it back to testdata/ (it was kept here because %s)", f, why)
		} else if !strings.Contains(err.Error(), "nondeterministic") && !strings.Contains(err.Error(), "TMPRL1100") {
			t.Errorf("%s: %v, want a non-determinism error", f, err)
		}
	}
}
