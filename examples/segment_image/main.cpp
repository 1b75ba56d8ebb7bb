// segment_image CONFIG CHECKPOINT IMAGE LABELS.png: one image through a trained model.
#include <attnseg/segmenter.h>
#include <opencv2/imgcodecs.hpp>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s CONFIG CHECKPOINT IMAGE LABELS.png\n", argv[0]);
    return 2;
  }
  try {
    attnseg::Segmenter segmenter(argv[1], argv[2]);       // the run's config.yaml and a checkpoint
    const cv::Mat image = cv::imread(argv[3]);            // BGR, as OpenCV reads it
    const cv::Mat labels = segmenter.predict(image);      // CV_8UC1: a class id per pixel
    const at::Tensor probs = segmenter.probabilities(image);  // float [K, H, W]
    cv::imwrite(argv[4], labels);
    std::printf("%s on %s\n", segmenter.block().c_str(), segmenter.runtime().c_str());
    for (size_t k = 0; k < segmenter.class_names().size(); ++k) {
      const double share = 100.0 * cv::countNonZero(labels == static_cast<int>(k)) / labels.total();
      const double confidence = probs[static_cast<int64_t>(k)].max().item<float>();
      std::printf("%-12s %5.1f%% of the pixels, highest probability %.2f\n",
                  segmenter.class_names()[k].c_str(), share, confidence);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
