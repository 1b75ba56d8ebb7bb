// Precompiled header: the torch and OpenCV headers dominate compile time (24 s per
// translation unit that includes torch/torch.h), so they are parsed once per target.
#pragma once

#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <yaml-cpp/yaml.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
