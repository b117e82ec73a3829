"""Device profiles: what a build for a device defaults to (quant, threads, context), its budgets,
and the hardware figures the roofline latency estimator (fnedge.devices.estimate) works from.
A profile is a built-in name or a YAML file (fnedge.devices.profile_file)."""

from fnedge.devices.registry import DeviceProfile, get_device, list_devices

__all__ = ["DeviceProfile", "get_device", "list_devices"]
