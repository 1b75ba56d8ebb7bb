// Whether an X display can be reached, asked before OpenCV's window back end (Qt) tries and
// aborts the process when it cannot. Alone in its file: Xlib's macros (None, Status, Bool)
// stay out of the rest of the code.
#include "engine/display.h"

#ifdef ATTNSEG_HAVE_X11
#include <X11/Xlib.h>
#endif

namespace attnseg {

bool x_display_reachable() {
#ifdef ATTNSEG_HAVE_X11
  Display* display = XOpenDisplay(nullptr);
  if (display == nullptr) return false;
  XCloseDisplay(display);
#endif
  return true;  // without Xlib at build time, OpenCV is left to find out
}

}  // namespace attnseg
