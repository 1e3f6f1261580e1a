//! The input contract shared by training and scan: how u8 RGB face crops become network
//! input (scaling, channel order, normalisation), how crops stack into batches and tracks into
//! sequences, and which way a network's output points. One place, so train and scan can never
//! disagree.
use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::weights::{ChannelOrder, OutputClass, Preprocess};

/// A model batch of examples, each the crops (`size` pixels a side) of one face in frame
/// order: for a frame model (`frames` None) one crop each, `[N, S, S, 3]` as [`crop_batch`];
/// for a sequence model of T = `frames`, `[N, T, S, S, 3]`, short examples padded by
/// [`pad_sequence`].
pub fn example_batch<'a, E: IntoIterator<Item = &'a Vec<u8>>>(examples: impl IntoIterator<Item = E>, size: i64, frames: Option<i64>) -> Tensor {
    match frames {
        None => crop_batch(examples.into_iter().flatten(), size),
        Some(t) => {
            let sequences: Vec<Tensor> = examples.into_iter().map(|crops| pad_sequence(&crop_batch(crops, size), t)).collect();
            Tensor::stack(&sequences, 0)
        }
    }
}

/// The network input of an [`example_batch`]: [`to_network_input`] for crops,
/// [`to_sequence_input`] for sequences.
pub fn to_example_input(batch: &Tensor, pre: &Preprocess, device: Device, frames: Option<i64>) -> Tensor {
    match frames {
        None => to_network_input(batch, pre, device),
        Some(_) => to_sequence_input(batch, pre, device),
    }
}

/// `frames`, the `[t, S, S, 3]` crops of a track with 1 <= t <= `length`, padded to `length`
/// by repeating the last crop (see [`SequenceModel`]).
pub fn pad_sequence(frames: &Tensor, length: i64) -> Tensor {
    let t = frames.size()[0];
    assert!((1..=length).contains(&t), "pad_sequence: {t} frames for a sequence of {length}");
    if t == length {
        return frames.shallow_clone();
    }
    let mut shape = frames.size();
    shape[0] = length - t;
    let last = frames.narrow(0, t - 1, 1).expand(&shape, false);
    Tensor::cat(&[frames.shallow_clone(), last], 0)
}

/// The windows a track of `frames` crops is scored in, for sequences of `length`: one window
/// (to pad) when the track is no longer than `length`; else consecutive windows of `length`,
/// the last one ending at the track's end, overlapping its predecessor rather than padded.
pub fn sequence_windows(frames: usize, length: usize) -> Vec<Range<usize>> {
    assert!(length > 0, "sequence_windows: length 0");
    if frames <= length {
        return if frames == 0 { Vec::new() } else { vec![0..frames] };
    }
    let mut windows: Vec<Range<usize>> = (0..frames / length).map(|i| i * length..(i + 1) * length).collect();
    if !frames.is_multiple_of(length) {
        windows.push(frames - length..frames);
    }
    windows
}

/// [`to_network_input`] for `[N, T, S, S, 3]` u8 sequences: `[N, T, 3, S, S]`.
pub fn to_sequence_input(sequences: &Tensor, pre: &Preprocess, device: Device) -> Tensor {
    let size = sequences.size();
    assert_eq!(size.len(), 5, "sequences are [N, T, S, S, 3], got {size:?}");
    to_network_input(&sequences.flatten(0, 1), pre, device).view([size[0], size[1], 3, size[2], size[3]])
}

/// The network's output as CPU logits of "fake", whichever class the network itself scores:
/// logit(P(fake)) = logit(1 - P(real)) = -logit(P(real)); for two-class logits, logit(softmax's
/// fake entry) = l_fake - l_other; a probability p becomes logit(p), with p kept within 1e-12
/// of 0 and 1 so that a saturated module gives a large finite logit, never an infinite one.
/// `output` is `[N]` for one value per input, `[N, 2]` for two-class logits.
pub(super) fn fake_logits_of(output: Tensor, class: OutputClass) -> Tensor {
    let logits = output.to_device(Device::Cpu).to_kind(Kind::Float);
    match class {
        OutputClass::Fake => logits,
        OutputClass::Real => -logits,
        OutputClass::Probability => logits.to_kind(Kind::Double).logit(1e-12).to_kind(Kind::Float),
        OutputClass::TwoClass { fake } => logits.select(1, fake) - logits.select(1, 1 - fake),
    }
}

/// Stacks square RGB crops, `size` pixels a side, into the `[N, size, size, 3]` u8 batch that
/// [`FaceModel::fake_logits`] and [`to_network_input`] take.
pub fn crop_batch<'a>(crops: impl IntoIterator<Item = &'a Vec<u8>>, size: i64) -> Tensor {
    let bytes: Vec<u8> = crops.into_iter().flatten().copied().collect();
    let n = bytes.len() as i64 / (size * size * 3);
    Tensor::from_slice(&bytes).view([n, size, size, 3])
}

/// The one place where u8 crops become network input, shared by scan and training so the
/// two can never disagree on scaling, channel order or normalisation.
pub fn to_network_input(crops: &Tensor, pre: &Preprocess, device: Device) -> Tensor {
    let x = crops.to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float);
    let x = match pre.channels {
        ChannelOrder::Rgb => x,
        ChannelOrder::Bgr => x.flip([1]),
    };
    // Pixels in [0, 1] as every built-in model has always computed them; else scaled to pixel_max.
    let x = if pre.pixel_max == 1.0 { x / 255.0 } else { x * (pre.pixel_max / 255.0) };
    let mean = Tensor::from_slice(&pre.mean).to_device(device).view([1, 3, 1, 1]).to_kind(Kind::Float);
    let std = Tensor::from_slice(&pre.std).to_device(device).view([1, 3, 1, 1]).to_kind(Kind::Float);
    (x - mean) / std
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tracks_repeat_their_last_crop() {
        let frames = Tensor::arange(2 * 2 * 2 * 3, (Kind::Uint8, Device::Cpu)).view([2, 2, 2, 3]);
        let padded = pad_sequence(&frames, 5);
        assert_eq!(padded.size(), [5, 2, 2, 3]);
        assert!(padded.narrow(0, 0, 2).equal(&frames));
        for i in 2..5 {
            assert!(padded.get(i).equal(&frames.get(1)), "frame {i}");
        }
        assert!(pad_sequence(&frames, 2).equal(&frames));
    }

    #[test]
    fn long_tracks_are_cut_into_windows() {
        assert_eq!(sequence_windows(0, 4), Vec::<Range<usize>>::new());
        assert_eq!(sequence_windows(3, 4), [0..3]);
        assert_eq!(sequence_windows(8, 4), [0..4, 4..8]);
        assert_eq!(sequence_windows(10, 4), [0..4, 4..8, 6..10]);
    }

    #[test]
    fn sequence_input_is_frame_input_per_frame() {
        let seqs = Tensor::randint(256, [2, 3, 8, 8, 3], (Kind::Uint8, Device::Cpu));
        let pre = Preprocess::imagenet();
        let x = to_sequence_input(&seqs, &pre, Device::Cpu);
        assert_eq!(x.size(), [2, 3, 3, 8, 8]);
        assert!(x.get(1).get(2).equal(&to_network_input(&seqs.get(1).narrow(0, 2, 1), &pre, Device::Cpu).get(0)));
    }

    #[test]
    fn channel_order_pixel_scale_and_output_kinds() {
        let crops = Tensor::from_slice(&[10u8, 20, 30]).view([1, 1, 1, 3]);
        let pre = Preprocess { channels: ChannelOrder::Bgr, pixel_max: 255.0, ..Preprocess::rgb(1, [1.0, 2.0, 3.0], [2.0; 3], OutputClass::Fake) };
        let x = Vec::<f32>::try_from(to_network_input(&crops, &pre, Device::Cpu).flatten(0, -1)).unwrap();
        assert_eq!(x, [(30.0 - 1.0) / 2.0, (20.0 - 2.0) / 2.0, (10.0 - 3.0) / 2.0]);
        // Built-in headers are written as before (no new keys), so existing files read the same.
        let json = serde_json::to_string(&Preprocess::meso_torch()).unwrap();
        assert!(!json.contains("channels") && !json.contains("pixel_max"), "{json}");
        let logits = |t: Tensor, class| Vec::<f32>::try_from(fake_logits_of(t, class)).unwrap();
        let p = logits(Tensor::from_slice(&[0.5f32, 0.8, 1.0]), OutputClass::Probability);
        assert!(p[0].abs() < 1e-6 && (p[1] - 4f32.ln()).abs() < 1e-5 && p[2].is_finite() && p[2] > 20.0, "{p:?}");
        let two = Tensor::from_slice(&[1.0f32, 3.0, -2.0, 0.5]).view([2, 2]);
        assert_eq!(logits(two.shallow_clone(), OutputClass::TwoClass { fake: 1 }), [2.0, 2.5]);
        assert_eq!(logits(two, OutputClass::TwoClass { fake: 0 }), [-2.0, -2.5]);
    }
}
