// Whether there is a display to open the demo's window on.
#pragma once

#include <string>

namespace attnseg {

// Why no window can be opened ("" when one can): DISPLAY and WAYLAND_DISPLAY unset, or an
// X display that does not accept a connection. Asked before OpenCV's window back end (Qt)
// tries, which aborts the process when it cannot.
std::string display_problem();

}  // namespace attnseg
