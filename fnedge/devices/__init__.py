"""Device profiles: what a build for a device defaults to (quant, threads, context)."""

from fnedge.devices.registry import DeviceProfile, get_device, list_devices

__all__ = ["DeviceProfile", "get_device", "list_devices"]
