package deploytest

import (
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// objects are a render's objects, decoded into their types.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	secrets         []*corev1.Secret
	configMaps      []*corev1.ConfigMap
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	scaledObjects   []*kedav1alpha1.ScaledObject
	serviceMonitors []*monitoringv1.ServiceMonitor
}

// decodeObjects decodes every document strictly into the Go type of its
// apiVersion and kind: an unknown or misplaced field fails, as does a
// kind the chart is not expected to make.
func decodeObjects(t *testing.T, docs []string) objects {
	t.Helper()
	var o objects
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			o.deployments, err = appendStrict(o.deployments, doc)
		case "v1 Service":
			o.services, err = appendStrict(o.services, doc)
		case "v1 Secret":
			o.secrets, err = appendStrict(o.secrets, doc)
		case "v1 ConfigMap":
			o.configMaps, err = appendStrict(o.configMaps, doc)
		case "policy/v1 PodDisruptionBudget":
			o.pdbs, err = appendStrict(o.pdbs, doc)
		case "networking.k8s.io/v1 NetworkPolicy":
			o.networkPolicies, err = appendStrict(o.networkPolicies, doc)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o.hpas, err = appendStrict(o.hpas, doc)
		case "keda.sh/v1alpha1 ScaledObject":
			o.scaledObjects, err = appendStrict(o.scaledObjects, doc)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o.serviceMonitors, err = appendStrict(o.serviceMonitors, doc)
		default:
			t.Fatalf("the chart made a %s %s, which this test does not know:\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
	}
	return o
}

// appendStrict decodes doc into a new T, rejecting unknown and duplicate
// fields, and appends it.
func appendStrict[T any](list []*T, doc string) ([]*T, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		return list, err
	}
	return append(list, v), nil
}
