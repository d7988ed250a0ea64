/* The only header bindgen reads: libvirt's public API and its error API (libvirt.h does not
 * include virterror.h). build.rs allowlists the few functions, types and constants used. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
