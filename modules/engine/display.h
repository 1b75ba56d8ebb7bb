#pragma once

namespace attnseg {

// True when the X display that DISPLAY names accepts a connection.
bool x_display_reachable();

}  // namespace attnseg
