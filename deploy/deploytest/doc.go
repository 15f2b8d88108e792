// Package deploytest checks what deploy/ ships against the binaries: the
// Helm chart (rendered with helm as a library, every object decoded
// strictly into its Kubernetes type), the NATS chart's values, the compose
// file (parsed by the compose-spec library), and the Dockerfile's scratch
// variant. Workers and gateways configured as the chart and the compose
// file configure them run for real against a real nats-server; with podman
// installed, the compose file's NATS cluster, workers and gateway run in
// containers built here.
//
// It is a module of its own so that helm, client-go and KEDA stay out of
// chatfleet's module; the Makefile's test target runs it.
package deploytest
