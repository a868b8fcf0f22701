//! Path-class distance, an unsupervised detector on per-input routing paths (the CDRP paper's observation, Wang, Su,
//! Zhang, Hu, CVPR 2018: adversarial images take paths unlike those of clean images of the class they are classified
//! as; the paper's own detector is a random forest trained on adversarial paths, which this one is not). Fitted on
//! clean training images only: the mean path of each class (by label); the score is the cosine distance
//! `1 - cos(path, mean path of the class the full model predicts)` over the conv channels' gates. It reads a route's
//! per-image gates: CDRP's learned paths (`cdrp`) or NND's module gates (`nnd`), one detector per route, fitted on that
//! route's paths of the fit images.
use super::{not_fitted, Detector, DetectorKind, View};
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::cdrp::conv_columns;
use crate::routes::{Resources, RouteKind};
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct PathClassDist {
    fit_size: usize,
    /// The route whose paths it reads (`None`: `cdrp`, until a suite binds it).
    route: Option<RouteKind>,
    /// `[classes, units]`: each class's mean path, fully connected columns zeroed.
    means: Option<Tensor>,
}

impl PathClassDist {
    pub fn new(fit_size: usize) -> Self {
        PathClassDist { fit_size, route: None, means: None }
    }

    /// The fitted class mean paths, `[classes, units]`.
    pub fn means(&self) -> Option<&Tensor> {
        self.means.as_ref()
    }

    /// The class means of `paths` `[N, units]` by `labels` `[N]` over `classes` classes, `columns` (`[1, units]`)
    /// kept; a class with no path is an error.
    pub fn fit_paths(&mut self, paths: &Tensor, labels: &Tensor, classes: i64, columns: &Tensor) -> Result<()> {
        let p = paths.to_kind(Kind::Double) * columns.to_kind(Kind::Double);
        let means = crate::routes::class_means(&p, labels, classes)
            .into_iter()
            .enumerate()
            .map(|(c, m)| {
                m.ok_or_else(|| Error::Missing(format!("detector path-class-dist: no fitting image of class {c}")))
            })
            .collect::<Result<Vec<_>>>()?;
        self.means = Some(Tensor::stack(&means, 0));
        Ok(())
    }
}

/// `1 - cos(a_i, b_i)` per row; a zero row has distance 1.
pub fn cosine_distance(a: &Tensor, b: &Tensor) -> Tensor {
    let dot = (a * b).sum_dim_intlist([1].as_slice(), false, Kind::Double);
    let norms = a.norm_scalaropt_dim(2, [1].as_slice(), false) * b.norm_scalaropt_dim(2, [1].as_slice(), false);
    let cos = dot / norms.clamp_min(1e-300);
    1.0 - cos
}

impl Detector for PathClassDist {
    fn kind(&self) -> DetectorKind {
        DetectorKind::PathClassDist
    }
    fn runs_on(&self, route: RouteKind) -> bool {
        self.route.map_or(route.has_paths(), |r| r == route)
    }
    fn needs_fit(&self) -> bool {
        true
    }
    fn fits_per_route(&self) -> bool {
        true
    }
    fn for_route(&mut self, route: RouteKind) {
        self.route = Some(route);
    }
    fn fit(&mut self, model: &Model, clean: &Dataset, res: Resources) -> Result<()> {
        if clean.split != Split::Train {
            return Err(Error::config(
                "fit data",
                clean.split,
                "path-class-dist is fitted on clean training images only",
            ));
        }
        let ds = clean.limit(self.fit_size);
        let route = crate::routes::build(self.route.unwrap_or(RouteKind::Cdrp), model, res)?;
        let paths = crate::routes::image_paths(model, route.as_ref(), &ds.images, 500)?;
        let labels = ds.labels.to_device(model.device());
        self.fit_paths(&paths, &labels, model.num_classes(), &conv_columns(model))
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let means = self.means.as_ref().ok_or_else(|| not_fitted("path-class-dist"))?;
        let path = v.route.gates.as_ref().ok_or_else(|| {
            Error::Model("detector path-class-dist needs a route with per-image paths (the cdrp or nnd mode)".into())
        })?;
        let columns = conv_columns(v.model).to_kind(Kind::Double);
        let pred = v.full.logits.argmax(-1, false);
        let p = path.to_kind(Kind::Double) * columns;
        Ok(cosine_distance(&p, &means.index_select(0, &pred.to_device(means.device()))))
    }
}
