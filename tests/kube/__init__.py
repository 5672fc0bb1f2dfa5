"""A fake Kubernetes API server (kmock) for KubeGemSpawner tests, with a hand-driven kubelet."""
