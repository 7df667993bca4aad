"""Float ONNX models made by PyTorch, for qforge's import test (ctest onnx_import).

Run once, by hand, with Debian's PyTorch 1.13 (apt-get install python3-torch); never in CI:
    /usr/bin/python3 tests/onnx/models/make_models.py tests/onnx/models
Trains two small classifiers for one epoch on Fashion-MNIST (Debian's dataset-fashion-mnist,
normalized as qforge's configs: mean 0.2860, std 0.3530), measures their test accuracy in
PyTorch, exports them with torch.onnx.export (opset 13, a dynamic batch axis) and writes
models.json with the accuracies. Kept in the tree beside their outputs:
  lenet_torch.onnx    conv-relu-maxpool, conv-relu-avgpool, flatten, Gemm, relu, dropout,
                      and a last layer written as MatMul + Add; exported in eval mode, so
                      PyTorch folds nothing here (no BatchNorm)
  resnet8_torch.onnx  a CIFAR-style ResNet-8 (stem, three BasicBlocks, two with 1x1
                      projection shortcuts, global average pool, linear), exported with
                      training=PRESERVE so its BatchNormalization nodes stay in the graph
and, untrained, the importer's fuzzing seed tests/fuzz/corpus/onnx/tiny_torch.onnx (a few KB:
Pad + AveragePool, a residual block with BatchNormalization and shared initializers behind
Identity nodes, MatMul + Add), beside the seeds tests/fuzz/make_seeds.cpp writes.
"""
import gzip
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

FOLDER = '/usr/share/datasets/fashion-mnist'
MEAN, STD = 0.2860, 0.3530


def load(split):
    prefix = 'train' if split == 'train' else 't10k'
    with gzip.open(f'{FOLDER}/{prefix}-images-idx3-ubyte.gz') as f:
        _, n, rows, cols = struct.unpack('>IIII', f.read(16))
        images = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).reshape(n, 1, rows, cols)
    with gzip.open(f'{FOLDER}/{prefix}-labels-idx1-ubyte.gz') as f:
        f.read(8)
        labels = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return (images.float() / 255 - MEAN) / STD, labels


class LeNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 5 * 5, 128)
        self.drop = nn.Dropout(0.2)
        self.w2 = nn.Parameter(torch.randn(128, 10) * 128 ** -0.5)  # y = x @ w2 + b2: MatMul + Add
        self.b2 = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = self.drop(F.relu(self.fc1(torch.flatten(x, 1))))
        return torch.matmul(x, self.w2) + self.b2


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet8Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.w = nn.Parameter(torch.randn(18, 3))
        self.b = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.bn(self.conv2(x)) + x)
        return torch.matmul(torch.flatten(x, 1), self.w) + self.b


def train_one_epoch(model, images, labels, lr):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    order = torch.randperm(len(images))
    for start in range(0, len(images), 64):
        batch = order[start:start + 64]
        optimizer.zero_grad()
        F.cross_entropy(model(images[batch]), labels[batch]).backward()
        optimizer.step()


def accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(images[i:i + 500]).argmax(1) for i in range(0, len(images), 500)])
    return (predictions == labels).float().mean().item()


def main(out):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train_images, train_labels = load('train')
    test_images, test_labels = load('test')
    record = {'made_by': f'torch {torch.__version__}, tests/onnx/models/make_models.py', 'dataset': 'fashion-mnist',
              'normalize': {'mean': MEAN, 'std': STD}, 'models': {}}
    for name, model, lr, mode in [('lenet_torch', LeNetLike(), 0.05, torch.onnx.TrainingMode.EVAL),
                                  ('resnet8_torch', ResNet8Like(), 0.05, torch.onnx.TrainingMode.PRESERVE)]:
        train_one_epoch(model, train_images, train_labels, lr)
        acc = accuracy(model, test_images, test_labels)
        model.eval()
        path = os.path.join(out, name + '.onnx')
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=13, training=mode,
                          input_names=['image'], output_names=['logits'],
                          dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}})
        record['models'][name] = {'pytorch_test_accuracy': round(acc, 6), 'epochs': 1, 'lr': lr,
                                  'bytes': os.path.getsize(path)}
        print(f'{name}: PyTorch test accuracy {100 * acc:.2f}%, {os.path.getsize(path)} bytes', flush=True)
    seed = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'fuzz', 'corpus', 'onnx')
    os.makedirs(seed, exist_ok=True)
    tiny = Tiny().eval()
    torch.onnx.export(tiny, torch.zeros(1, 1, 6, 6), os.path.join(seed, 'tiny_torch.onnx'), opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, dynamic_axes={'input': {0: 'batch'}},
                      input_names=['input'])
    with open(os.path.join(out, 'models.json'), 'w') as f:
        json.dump(record, f, indent=2)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
