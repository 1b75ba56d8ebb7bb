// Fault injection for the fault tests, through the environment (without it each call costs
// one getenv, on paths that write files anyway):
// - ATTNSEG_KILL_AT=<point>:<name part>:<n>: the process kills itself with SIGKILL the n-th
//   time (from 1) it reaches <point> for a file whose name contains <name part>, e.g.
//   "commit:.pt:2" between writing the second checkpoint's temporary file and renaming it, or
//   "step:rank1:6" as rank 1 of a data-parallel job starts its sixth training step;
// - ATTNSEG_FULL_DISK=<name part>: writes of files whose name contains it fail with ENOSPC
//   after their first half, as on a disk that fills up.
#pragma once

#include <filesystem>

namespace attnseg {

void kill_here_if_asked(const char* point, const std::filesystem::path& file);
// True when ATTNSEG_FULL_DISK names `file`.
bool disk_full_for(const std::filesystem::path& file);

}  // namespace attnseg
