"""Foreign HTTP APIs onto the control plane's calls: the shapes other platforms' clients speak
(RunPod's endpoints so far), each behind the same token as the rest of the API."""
