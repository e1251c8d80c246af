# PremiScale. `make run` runs the demo on the embedded Temporal server;
# `make test` runs every test against real libvirtd and Temporal.
SHELL        := /bin/bash
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN          := bin/premiscale
CONFIG       ?= deploy/examples/demo.yaml
STATICCHECK  := honnef.co/go/tools/cmd/staticcheck@v0.8.2
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
GOBIN        := $(shell $(GO) env GOPATH)/bin

.PHONY: build test run lint bench crash proto clean image cluster verify-sdk

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/premiscale

# The container image as an OCI archive (no daemon, no base image): a
# static, stripped binary with the version stamped, run as a non-root user.
IMAGE        := bin/premiscale-image.tar
image:
	CGO_ENABLED=0 $(GO) build -trimpath -tags timetzdata,osusergo,netgo -ldflags "-s -w -X main.version=$(VERSION)" -o bin/premiscale-linux-amd64 ./cmd/premiscale
	$(GO) run ./deploy/image -binary bin/premiscale-linux-amd64 -version $(VERSION) -out $(IMAGE)
	@echo "wrote $(IMAGE) (podman load -i $(IMAGE), or skopeo copy oci-archive:$(IMAGE) docker://REGISTRY/premiscale:$(VERSION))"

test:
	test/scripts/test.sh

# Regenerate the externalgrpc Go code from its .proto (needs apt's
# protobuf-compiler and libprotobuf-dev; the plugins are pinned here).
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
proto:
	@test -x $(GOBIN)/protoc-gen-go || $(GO) install $(PROTOC_GEN_GO)
	@test -x $(GOBIN)/protoc-gen-go-grpc || $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(GOBIN):$$PATH protoc -I internal/externalgrpc/protos -I /usr/include \
		--go_out=. --go_opt=module=github.com/premiscale/premiscale \
		--go-grpc_out=. --go-grpc_opt=module=github.com/premiscale/premiscale \
		internal/externalgrpc/protos/externalgrpc.proto

# The long crash-safety run: KILLS SIGKILLs of the controller (CI runs 50).
KILLS ?= 500
crash:
	TEST_PACKAGES=./test test/scripts/test.sh -run TestKillLoop -v -crash.kills=$(KILLS)

run: build
	test/scripts/run.sh $(BIN) $(CONFIG)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' ':!:third_party')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...
	@test -x $(GOBIN)/workflowcheck || $(GO) install $(WORKFLOWCHECK)
	$(GOBIN)/workflowcheck ./workflows/...
	third_party/verify-sdk.sh

# third_party/temporal-sdk-go is go.temporal.io/sdk from the module proxy
# plus third_party/patches, byte for byte (third_party/README.md).
verify-sdk:
	third_party/verify-sdk.sh

bench:
	test/scripts/bench.sh

# The test suite's real Kubernetes control plane, left running for manual
# work (Ctrl-C stops it): prints the KUBECONFIG to export.
cluster:
	PSTEST_K8S_DIR="$$(test/k8s/build.sh)" $(GO) run ./test/k8s/cluster

clean:
	rm -rf bin .premiscale
