// CPU discovery and pinning: the only file that includes hwloc.
//
// The topology is loaded once per process and kept: hwloc_topology_load
// reads sysfs and costs milliseconds, and tests boot many machines.
#include <hwloc.h>

#include <mutex>

#include "runtime/internal/machine.h"
#include "runtime/panic.h"

namespace usmp {

namespace {

std::once_flag g_topo_once;
hwloc_topology_t g_topo = nullptr;
int g_npus = 1;

void
topology_load() noexcept
{
	if (hwloc_topology_init(&g_topo) != 0 || hwloc_topology_load(g_topo) != 0) {
		printf_diag("usmp: hwloc could not load the topology; assuming 1 PU");
		g_topo = nullptr;
		return;
	}
	int n = hwloc_get_nbobjs_by_type(g_topo, HWLOC_OBJ_PU);
	g_npus = n > 0 ? n : 1;
}

} // namespace

int
topology_npus() noexcept
{
	std::call_once(g_topo_once, topology_load);
	return g_npus;
}

int
topology_pin(int pu) noexcept
{
	std::call_once(g_topo_once, topology_load);
	if (g_topo == nullptr)
		return -1;
	hwloc_obj_t obj = hwloc_get_obj_by_type(g_topo, HWLOC_OBJ_PU,
	    static_cast<unsigned>(pu % g_npus));
	if (obj == nullptr)
		return -1;
	if (hwloc_set_cpubind(g_topo, obj->cpuset, HWLOC_CPUBIND_THREAD) != 0)
		return -1;
	return static_cast<int>(obj->os_index);
}

} // namespace usmp
