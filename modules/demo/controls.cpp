#include "demo/controls.h"

#include <algorithm>
#include <cmath>

namespace attnseg {

KeyAction apply_key(DemoControls& c, int key, int blocks) {
  if (key < 0) return KeyAction::none;
  key &= 0xff;  // the key's character; GTK adds modifier bits above it
  auto select = [&](int b) {
    c.block = ((b % blocks) + blocks) % blocks;
    ++c.version;
  };
  auto nudge = [&](double d) {
    c.opacity = std::clamp(std::round((c.opacity.load() + d) * 10) / 10, 0.0, 1.0);
  };
  switch (key) {
    case 'n':
    case '\t':
      select(c.block + 1);
      return KeyAction::next_block;
    case 'p':
      select(c.block - 1);
      return KeyAction::previous_block;
    case ' ':
      c.paused = !c.paused;
      return KeyAction::pause;
    case '+':
    case '=':
      nudge(0.1);
      return KeyAction::opacity;
    case '-':
    case '_':
      nudge(-0.1);
      return KeyAction::opacity;
    case 's':
      return KeyAction::save;
    case 'c':
      c.clear_pin();
      return KeyAction::clear;
    case 'q':
    case 27:
      c.quit = true;
      return KeyAction::quit;
    default:
      break;
  }
  if (key >= '1' && key <= '9' && key - '1' < blocks) {
    select(key - '1');
    return KeyAction::select_block;
  }
  return KeyAction::none;
}

}  // namespace attnseg
