//! `retail.v1.ProductService`: the product master, answered from memory, and the comparable
//! products a short SKU can be swapped for (same category and price band).
//!
//! An "unknown-id" fault renames the first product of `GetProducts`.

use super::{Handler, call};
use crate::faults::Malformed;
use promo_contracts::retail::v1::*;
use tonic::{Request, Response, Status};

/// A product row as the wire carries it.
fn product(p: &crate::ProductRow) -> Product {
    Product {
        sku: p.sku.clone(),
        name: p.name.clone(),
        category: p.category.clone(),
        supplier_id: p.supplier_id.clone(),
        cost: p.cost.clone(),
        regular_price: p.regular_price.clone(),
        price_band: p.price_band,
        eligible_channels: (1..=4).filter(|c| p.channels & crate::dataset::channel_bit(*c) != 0).collect(),
    }
}

#[tonic::async_trait]
impl product_service_server::ProductService for Handler {
    async fn get_products(
        &self,
        req: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        let fx = self.0.faults.before(call("product", "GetProducts")).await?;
        let req = req.into_inner();
        if req.skus.len() > 10_000 {
            return Err(Status::invalid_argument(format!(
                "skus: {} requested; at most 10000 per call",
                req.skus.len()
            )));
        }
        let m = self.0.master();
        let unknown: Vec<&str> =
            req.skus.iter().filter(|s| !m.sku_index.contains_key(*s)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
        }
        let mut products: Vec<Product> =
            req.skus.iter().map(|s| product(&m.products[m.sku_index[s]])).collect();
        if let (Some(Malformed::UnknownId), Some(p)) = (fx.malformed, products.first_mut()) {
            p.sku = Malformed::unknown(&p.sku);
        }
        Ok(Response::new(GetProductsResponse { products }))
    }

    async fn list_comparable_products(
        &self,
        req: Request<ListComparableProductsRequest>,
    ) -> Result<Response<ListComparableProductsResponse>, Status> {
        self.0.faults.before(call("product", "ListComparableProducts")).await?;
        let sku = req.into_inner().sku;
        let m = self.0.master();
        let Some(&i) = m.sku_index.get(&sku) else {
            return Err(Status::not_found(format!("unknown SKUs: {sku}")));
        };
        let me = &m.products[i];
        Ok(Response::new(ListComparableProductsResponse {
            products: m
                .products
                .iter()
                .filter(|p| p.sku != me.sku && p.category == me.category && p.price_band == me.price_band)
                .map(product)
                .collect(),
        }))
    }
}
