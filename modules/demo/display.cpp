// Alone in its file: Xlib's macros (None, Status, Bool) stay out of the rest of the code.
#include "demo/display.h"

#include <cstdlib>

#ifdef ATTNSEG_HAVE_X11
#include <X11/Xlib.h>
#endif

namespace attnseg {
namespace {

bool x_display_reachable() {
#ifdef ATTNSEG_HAVE_X11
  Display* display = XOpenDisplay(nullptr);
  if (display == nullptr) return false;
  XCloseDisplay(display);
#endif
  return true;  // without Xlib at build time, OpenCV is left to find out
}

}  // namespace

std::string display_problem() {
  const char* x11 = std::getenv("DISPLAY");
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  const bool have_x11 = x11 != nullptr && *x11 != '\0';
  if (!have_x11 && (wayland == nullptr || *wayland == '\0')) {
    return "no display to open a window on (DISPLAY is not set)";
  }
  if (have_x11 && !x_display_reachable()) {
    return std::string("cannot connect to the display DISPLAY=") + x11 + " (no X server there?)";
  }
  return "";
}

}  // namespace attnseg
